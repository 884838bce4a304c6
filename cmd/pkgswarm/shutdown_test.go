package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// stopBound is the hard upper bound on a stop with no answer being written.
// Such a stop takes milliseconds; before the fix one took 5 s when a client
// held a connection it had sent nothing on yet (net/http's Shutdown waits
// for such a connection until it is 5 s old, and serve gave Shutdown 5 s).
// The bound is wide enough for a loaded machine and a race-enabled binary.
const stopBound = 2 * time.Second

// TestServeExitsPromptlyOnSIGTERM: serve told to stop (SIGTERM, as
// systemctl stop and restart send) exits within stopBound, with status 0
// (the store closed without error), while a client holds a connection it
// has sent nothing on (an HTTP client's transport leaves such connections in
// its pool when another one took the request they were dialed for: LAN
// peers did, and in the office churn benchmark a node took 2.7–5.0 s to
// exit) and another one idle after a request. The swarm runs on loopback
// with no bootstrap node (--swarm lan: nothing leaves the machine).
func TestServeExitsPromptlyOnSIGTERM(t *testing.T) {
	s := startServe(t, runOpts{}, "--data-dir", t.TempDir(), "--swarm", "lan", "--swarm-listen", "127.0.0.1:0")
	dialUnused(t, func() (net.Conn, error) { return net.Dial("tcp", s.addr) }, s.addr)

	began := time.Now()
	err := s.stop()
	checkPromptExit(t, "serve", time.Since(began), err, s.log())
}

// checkPromptExit fails t unless a serve told to stop (SIGTERM) took at
// most stopBound and exited with status 0 (err nil); log is its output.
func checkPromptExit(t *testing.T, who string, took time.Duration, err error, log string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s after SIGTERM: %v (want exit status 0: the store closed cleanly)\n%s", who, err, log)
	}
	if took > stopBound {
		t.Fatalf("%s exited %v after SIGTERM; want at most %v with no answer being written\n%s", who, took, stopBound, log)
	}
	t.Logf("%s exited %v after SIGTERM", who, took.Round(time.Millisecond))
}

// dialUnused opens, with dial, a connection to the server at addr that
// sends nothing, and another that stays idle after one request; their
// cleanup closes them. The answer on the second one says that the server has
// accepted the first (it accepts in order).
func dialUnused(t *testing.T, dial func() (net.Conn, error), addr string) {
	t.Helper()
	unused, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unused.Close() })
	idle, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idle.Close() })
	if _, err := io.WriteString(idle, "GET /_pkgswarm/v1/node HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// testServer serves h on a loopback port with a connGate, as serve does.
func testServer(t *testing.T, h http.Handler) (hs *http.Server, gate *connGate, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate = &connGate{}
	hs = &http.Server{Handler: h, ConnState: gate.track}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return hs, gate, ln.Addr().String()
}

// directClient is an HTTP client that ignores proxy variables.
func directClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil}}
}

// stopping returns a channel closed once hs has begun to shut down.
func stopping(hs *http.Server) <-chan struct{} {
	ch := make(chan struct{})
	hs.RegisterOnShutdown(func() { close(ch) })
	return ch
}

// A connection that has sent no request is closed at once, whatever the
// grace: stopHTTP does not wait for it.
func TestStopHTTPClosesConnectionsThatSentNoRequest(t *testing.T) {
	hs, gate, addr := testServer(t, http.NotFoundHandler())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The server has the connection once it has seen it new.
	waitFor(t, "the server registers the connection", 10*time.Second, func() (bool, string) {
		gate.mu.Lock()
		defer gate.mu.Unlock()
		return len(gate.conns) == 1, fmt.Sprintf("%d connections", len(gate.conns))
	})
	began := time.Now()
	unused, cut, err := stopHTTP(hs, gate, time.Minute)
	if took := time.Since(began); err != nil || unused != 1 || cut != 0 || took > stopBound {
		t.Fatalf("stopHTTP = %d unused, %d cut, %v after %v; want 1, 0, nil within %v (the connection closed at once)", unused, cut, err, took, stopBound)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on the connection after stopHTTP: %d bytes, %v; want EOF (closed by the server)", n, err)
	}
}

// An answer being written when the server is told to stop gets the grace
// to finish, and the client gets all of it.
func TestStopHTTPLetsAnAnswerFinishWithinTheGrace(t *testing.T) {
	release := make(chan struct{})
	hs, gate, addr := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "-last")
	}))
	down := stopping(hs)
	resp, err := directClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type result struct {
		cut int
		err error
	}
	stopped := make(chan result, 1)
	go func() {
		_, cut, err := stopHTTP(hs, gate, time.Minute)
		stopped <- result{cut, err}
	}()
	<-down
	close(release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "first-last" {
		t.Errorf("body %q, %v; want the whole answer, first-last", body, err)
	}
	select {
	case r := <-stopped:
		if r.cut != 0 || r.err != nil {
			t.Errorf("stopHTTP = %d cut, %v; want 0, nil", r.cut, r.err)
		}
	case <-time.After(time.Minute): // a hang guard
		t.Fatal("stopHTTP did not return once the answer was written")
	}
}

// An answer still being written when the grace ends is cut: its
// connection is closed and stopHTTP says so.
func TestStopHTTPCutsAnAnswerPastTheGrace(t *testing.T) {
	hs, gate, addr := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // never finishes on its own
	}))
	resp, err := directClient().Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, cut, err := stopHTTP(hs, gate, 100*time.Millisecond)
	if cut != 1 || err != nil {
		t.Errorf("stopHTTP = %d cut, %v; want 1, nil", cut, err)
	}
	if body, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body %q, %v; want the answer cut (unexpected EOF)", body, err)
	}
}

// A node told to stop while it is still queueing its cache for seeding (a
// large cache: the queue stays full while the seeder hashes) stops without
// error. seedExisting returned the context's error, which made serve exit
// with status 1 ("pkgswarm: context canceled") and no "pkgswarm stopped".
func TestSeedExistingStopsWithoutError(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	putBlobs(t, st, 100)
	data := make([]byte, 100)
	copy(data, "blob 0") // putBlobs's first blob
	if err := st.MarkShareable(store.Digest(sha256.Sum256(data))); err != nil {
		t.Fatal(err)
	}
	s := &seeder{ch: make(chan seedJob)} // no room and nobody reading: a full queue
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := seedExisting(ctx, st, s); err != nil {
		t.Fatalf("seedExisting stopped by its context: %v; want nil (stopping is not a failure)", err)
	}
}

// TestLabServeExitsPromptly is TestServeExitsPromptlyOnSIGTERM with every
// subsystem on, as in the office benchmark: two nodes on a LAN that found
// each other by mDNS and bootstrap their swarms' DHT from each other (the
// TXT "swarm" port), b holding a connection to a that it has sent nothing
// on. a, told to stop, says goodbye and exits within stopBound, with status
// 0; before the fix it took 5 s.
func TestLabServeExitsPromptly(t *testing.T) {
	needRoot(t, "network namespaces")
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// A race-enabled binary otherwise sleeps a second at exit.
		t.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	lab := netlab.New(t, "stop")
	lan := lab.AddLAN("lan", "10.77.44.0/24")
	a, b := lab.AddHost("a", lan), lab.AddHost("b", lan)
	// At debug, a failure's log shows how long each step of the stop took.
	on := []string{"--log-level", "debug", "--mdns=true", "--mdns-interface", "eth0", "--swarm", "lan", "--swarm-listen", ":6881"}
	addrA := a.IP().String() + ":3142"
	pa := startLabServe(t, a, addrA, on...)
	startLabServe(t, b, b.IP().String()+":3142", on...)

	clientB := office.HTTPClient(b)
	defer clientB.CloseIdleConnections()
	// Only a hang guard: nodes find each other in about a second.
	waitFor(t, "a and b peers of each other", time.Minute, func() (bool, string) {
		var st status.Status
		resp, err := clientB.Get("http://" + addrA + "/_pkgswarm/status")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return false, err.Error()
		}
		return len(st.Peers) == 1 && st.Peers[0].Healthy, fmt.Sprintf("a's peers: %+v", st.Peers)
	})
	dialUnused(t, func() (net.Conn, error) {
		return clientB.Transport.(*http.Transport).DialContext(context.Background(), "tcp", addrA)
	}, addrA)

	began := time.Now()
	stopServe(t, pa)
	took := time.Since(began)
	checkPromptExit(t, "a", took, pa.Wait(), pa.Log())
}
