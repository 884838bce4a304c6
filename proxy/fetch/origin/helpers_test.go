package origin

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// server is a real HTTP server for a test, counting the connections it
// accepted: a refused origin must not even see a connection.
type server struct {
	*httptest.Server
	conns atomic.Int64
	port  int
}

// newServer starts h on ln (nil: 127.0.0.1, any port).
func newServer(t *testing.T, ln net.Listener, h http.Handler) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	if ln != nil {
		s.Listener.Close()
		s.Listener = ln
	}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	s.port = s.Listener.Addr().(*net.TCPAddr).Port
	return s
}

// listenPort80 listens on port 80 of a loopback address other than
// 127.0.0.1: 127.0.0.2 (the address of the report in issue 11, item 12) when
// it is free, else another one, as another test on this machine may hold it.
func listenPort80(t *testing.T) (net.Listener, netip.Addr) {
	t.Helper()
	cands := []netip.Addr{netip.MustParseAddr("127.0.0.2")}
	for range 8 {
		cands = append(cands, netip.AddrFrom4([4]byte{127, 0, byte(1 + rand.IntN(250)), byte(2 + rand.IntN(250))}))
	}
	var lastErr error
	for _, a := range cands {
		ln, err := net.Listen("tcp4", netip.AddrPortFrom(a, 80).String())
		if err == nil {
			return ln, a
		}
		lastErr = err
	}
	t.Skipf("no loopback address has port 80 free: %v", lastErr)
	return nil, netip.Addr{}
}

// newClient makes a Client for cfg and closes its idle connections at the
// end of the test.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// loopback is a Config that allows origins on loopback at the given ports:
// every test server listens there.
func loopback(ports ...int) Config {
	return Config{AllowPorts: ports, Egress: Egress{AllowLoopback: true}}
}

// get fetches u through c and reads the whole body.
func get(t *testing.T, c fetch.Source, a *fetch.Attempt) (*fetch.Body, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := c.Fetch(ctx, a)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	return b, data, err
}

// hosts is a Config.Resolve over a fixed table: tests never ask DNS.
func hosts(m map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		ss, ok := m[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host (test table)", Name: host, IsNotFound: true}
		}
		out := make([]netip.Addr, len(ss))
		for i, s := range ss {
			out[i] = netip.MustParseAddr(s)
		}
		return out, nil
	}
}

// routed returns a transport that stands in for the network beyond this
// machine: a dial to an address:port in routes reaches the loopback listener
// given for it. Tests give origins documentation addresses (RFC 5737) that
// the default policy allows, so that it can be exercised with real servers.
// Any other address that is not loopback is refused: nothing leaves the
// machine.
func routed(routes map[string]string) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := routes[addr]; ok {
			return d.DialContext(ctx, network, to)
		}
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Unmap().IsLoopback() {
			return nil, fmt.Errorf("test network: no route to %s", addr)
		}
		return d.DialContext(ctx, network, addr)
	}}
}

func hostPort(s *server) string { return "127.0.0.1:" + strconv.Itoa(s.port) }
