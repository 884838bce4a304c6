package origin_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/origin"
)

// The origin client passes the conformance suite: a real HTTP origin
// misbehaving in each way, with a good mirror after it.
func TestConformance(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		srv := httptest.NewServer(fetchtest.Handler(content, fault))
		t.Cleanup(srv.Close)
		c, err := origin.New(origin.Config{AllowPorts: []int{portOf(t, srv.URL)}, Egress: origin.Egress{AllowLoopback: true}})
		if err != nil {
			t.Fatal(err)
		}
		tested := srv.URL + "/pool/f.deb"
		cfg.Origin = dispatch{tested: c, "http://mirror.test/pool/f.deb": fallback}
		cfg.Mirrors = func(string) []string { return []string{tested, "http://mirror.test/pool/f.deb"} }
	})
}

// dispatch is an origin tier that sends each attempt to the source of its
// URL.
type dispatch map[string]fetch.Source

func (d dispatch) Name() string { return "origin" }
func (d dispatch) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	if s, ok := d[a.URL]; ok {
		return s.Fetch(ctx, a)
	}
	return nil, fmt.Errorf("%s: %w", a.URL, fetch.ErrNotFound)
}

func portOf(t *testing.T, u string) int {
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(u, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

// A node opens at most MaxConnsPerHost connections to one origin however
// many downloads run at once.
func TestConnsPerHostBounded(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	open, most := 0, 0
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := origin.New(origin.Config{AllowPorts: []int{portOf(t, srv.URL)}, Egress: origin.Egress{AllowLoopback: true}, MaxConnsPerHost: 3})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &fetch.Request{URL: fmt.Sprintf("%s/pool/%d.deb", srv.URL, i)}
			b, err := c.Fetch(context.Background(), &fetch.Attempt{Request: req, URL: req.URL})
			if err == nil {
				io.Copy(io.Discard, b)
				b.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let every request reach the transport
	close(release)
	wg.Wait()
	if most > 3 {
		t.Fatalf("%d connections were open at once to one origin, want at most 3", most)
	}
}
