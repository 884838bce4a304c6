package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// How serve stops. SIGTERM or SIGINT (systemctl stop and restart) ends its
// context. Discovery sends its mDNS goodbye, the HTTP server stops
// (stopHTTP) and the seeder stops, all at once; when they are done the node
// (its downloads), the swarm and, last, the store are closed: downloads
// commit into the store and the swarm reads from it, and the store's Close
// syncs what was committed and closes the index. The "pkgswarm stopped"
// line says how long each step took.

// shutdownGrace bounds how long a stopping serve lets the answers being
// written finish before it closes their connections. A file of a few MB
// takes well under a second on a LAN; a big one would not finish in any
// grace worth waiting for, and its client tries again elsewhere (apt its
// next source, a peer the next tier).
const shutdownGrace = 2 * time.Second

// connGate holds the server's connections that have not sent a request
// yet, so that a stopping serve can close them at once. net/http's Shutdown
// closes idle keep-alive connections at once, but waits for a new one
// (StateNew) until it is 5 s old (golang/go#22682: its first request may be
// on its way), so a client that had just opened a spare connection kept
// serve from exiting for up to 5 s (serve's whole grace then). An HTTP
// client's transport opens such connections routinely: a request dials,
// another connection of the pool frees up first and takes the request, and
// the new one goes into the pool unused (in the office churn benchmark, the
// node stopped had one from a LAN peer reading a file from it, in each of
// three runs). A request sent on a connection a stopping server closes is
// the keep-alive race of RFC 9112 §9.3.1: the client retries it, as it does
// for an idle connection closed under it.
//
// A connection whose requests the quick lane answers (proxy.Readahead) is
// new or idle to net/http, which never sees those requests; closing one
// waits for the answer being written (the proxy's raConn.Close).
//
// The zero value is ready to use; track is the http.Server's ConnState.
type connGate struct {
	mu      sync.Mutex                  // protects the fields below
	conns   map[net.Conn]http.ConnState // open connections: new, active or idle
	closing bool                        // closeFresh was called: new connections are closed as they come
}

// track records c's state; it is the http.Server's ConnState. Once
// closeFresh has been called, a new connection is closed at once.
func (g *connGate) track(c net.Conn, s http.ConnState) {
	g.mu.Lock()
	switch {
	case s == http.StateClosed || s == http.StateHijacked:
		delete(g.conns, c)
	case s == http.StateNew && g.closing:
		g.mu.Unlock()
		c.Close()
		return
	default:
		if g.conns == nil {
			g.conns = map[net.Conn]http.ConnState{}
		}
		g.conns[c] = s
	}
	g.mu.Unlock()
}

// closeFresh closes the connections that have not sent a request, and
// every new one from now on, and returns how many it closed now. It does
// not wait for them: a connection the quick lane is answering on closes
// once that answer is written.
func (g *connGate) closeFresh() int {
	g.mu.Lock()
	g.closing = true
	var fresh []net.Conn
	for c, s := range g.conns {
		if s == http.StateNew {
			fresh = append(fresh, c)
		}
	}
	g.mu.Unlock()
	for _, c := range fresh {
		go c.Close()
	}
	return len(fresh)
}

// active is how many connections have a request being answered.
func (g *connGate) active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, s := range g.conns {
		if s == http.StateActive {
			n++
		}
	}
	return n
}

// stopHTTP stops hs: it stops accepting, closes the idle connections and
// those that have not sent a request (gate, whose track must be hs's
// ConnState), lets the answers being written finish for up to grace, and
// then closes their connections. It returns how many connections that had
// sent no request it closed (unused) and how many answers it cut after the
// grace (cut). Handlers of cut connections may still be running when it
// returns; their writes fail.
func stopHTTP(hs *http.Server, gate *connGate, grace time.Duration) (unused, cut int, err error) {
	unused = gate.closeFresh()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err = hs.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		return unused, 0, err
	}
	cut = gate.active()
	if err := hs.Close(); err != nil && !errors.Is(err, net.ErrClosed) { // Shutdown closed the listener
		return unused, cut, err
	}
	return unused, cut, nil
}
