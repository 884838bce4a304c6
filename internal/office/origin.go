package office

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// Origin is the package mirror of an office: a testrepo.Origin whose clients
// reach it at an address of its own lab host. Nodes connect to URL, which
// lives in the origin host's namespace (and behind its link, so shaping that
// link shapes the origin's uplink); a relay in the test process passes each
// connection to the testrepo server on the test's loopback. The embedded
// testrepo.Origin gives the access log (Requests, Log, ResetLog) and the
// faults (Throttle, CutAfter, Tamper, Stop, Start…); its own URL field is
// the loopback one, which nodes cannot reach: use URL. With
// Options.OriginDelay the relay holds every chunk back that long in each
// direction, emulating a distant mirror (this kernel has no netem).
type Origin struct {
	*testrepo.Origin
	// URL is "http://<origin host address>:<Port>" with no trailing slash:
	// the repository root apt's sources name.
	URL string
	// Port is the port the origin listens on in its namespace.
	Port int
	// Host is the origin's lab host, and LAN the network its link is on.
	Host *netlab.Host
	LAN  *netlab.LAN

	ln    net.Listener
	delay time.Duration         // one-way delay in each direction; 0 for none
	mu    sync.Mutex            // protects conns, closed
	conns map[net.Conn]struct{} // open relayed connections, both sides
	// closed is set by close; no connection is added after it.
	closed bool
	wg     sync.WaitGroup // relay goroutines
}

// startOrigin serves dir from the test process and relays port on host's
// address to it.
func startOrigin(host *netlab.Host, dir string, port int, delay time.Duration) (*Origin, error) {
	srv, err := testrepo.ServeDir(dir)
	if err != nil {
		return nil, fmt.Errorf("office: origin: %w", err)
	}
	addr := net.JoinHostPort(host.IP().String(), strconv.Itoa(port))
	ln, err := listenIn(host.Namespace(), "tcp", addr)
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("office: origin: %w", err)
	}
	o := &Origin{Origin: srv, Host: host, Port: port, ln: ln, delay: delay, conns: map[net.Conn]struct{}{}}
	o.URL = "http://" + host.IP().String()
	if port != 80 {
		o.URL = "http://" + addr
	}
	o.wg.Add(1)
	go o.accept()
	return o, nil
}

func (o *Origin) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				slog.Warn("office: origin relay stopped accepting", "addr", o.ln.Addr(), "err", err)
			}
			return
		}
		o.wg.Add(1)
		go o.relay(c)
	}
}

// relay copies between a lab client and the loopback server, half-closing
// each direction as it ends, as a router would pass a TCP stream.
func (o *Origin) relay(c net.Conn) {
	defer o.wg.Done()
	up, err := net.Dial("tcp", o.Origin.Addr)
	if err != nil {
		// The server is stopped (Origin.Stop): the client sees its
		// connection closed, as when a mirror goes down.
		c.Close()
		return
	}
	if !o.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer o.untrack(c, up)
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		if o.delay > 0 {
			delayedCopy(dst, src, o.delay)
		} else {
			io.Copy(dst, src)
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	c.Close()
	up.Close()
}

// delayedCopy copies src to dst, holding each chunk back until delay after
// it was read: a one-way link delay that leaves the rate alone (up to the
// queue's capacity per delay). It stops at src's EOF or either side's error;
// on a write error it closes src so the reader ends too.
func delayedCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	q := make(chan chunk, 256) // 256 × 32 KiB in flight: 8 MiB per delay
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for ch := range q {
		if failed {
			continue // drain so the reader is not stuck
		}
		time.Sleep(time.Until(ch.due))
		if _, err := dst.Write(ch.b); err != nil {
			failed = true
			src.Close()
		}
	}
}

func (o *Origin) track(cs ...net.Conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	for _, c := range cs {
		o.conns[c] = struct{}{}
	}
	return true
}

func (o *Origin) untrack(cs ...net.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range cs {
		delete(o.conns, c)
	}
}

// close stops the relay and the server and waits for every relay goroutine.
func (o *Origin) close() {
	o.ln.Close()
	o.mu.Lock()
	o.closed = true
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
	o.Origin.Stop()
}
