package origin_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

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
