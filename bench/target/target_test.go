package target

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/bench/origin"
)

func TestStartUnknownKind(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Options{Kind: "squid", WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `unknown kind "squid"`) {
		t.Fatalf("Start(squid) = %v", err)
	}
}

// TestDirect: the origin itself is a target without a process.
func TestDirect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := origin.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	d, err := Start(context.Background(), Options{Kind: Direct, WorkDir: t.TempDir(), Origin: o.URL})
	if err != nil {
		t.Fatal(err)
	}
	if d.PID != 0 || d.Proxy != "" || d.URL("/f") != o.URL+"/f" {
		t.Fatalf("direct target = %+v", d)
	}
	resp, err := d.Client(1).Get(d.URL("/f"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET through the direct target: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestStartNeedsOriginPort(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "http://127.0.0.1", "https://127.0.0.1:1", "http://127.0.0.1:1/x", "::"} {
		if _, err := Start(context.Background(), Options{Kind: Direct, WorkDir: t.TempDir(), Origin: bad}); err == nil {
			t.Errorf("Start with origin %q: no error", bad)
		}
	}
}

// TestClientUsesProxy: a forward-proxy target's client sends absolute-URI
// requests to the proxy.
func TestClientUsesProxy(t *testing.T) {
	t.Parallel()
	var asked string
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked = r.URL.String() }))
	defer p.Close()
	tg := &Target{Kind: Pkgswarm, Proxy: p.URL, Base: "http://127.0.0.1:9"}
	resp, err := tg.Client(1).Get(tg.URL("/dists/stable/InRelease"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if asked != "http://127.0.0.1:9/dists/stable/InRelease" {
		t.Fatalf("the proxy was asked for %q, want the absolute URI", asked)
	}
}

// Not parallel: it empties PATH.
func TestMissingNamesDebianPackages(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	miss := strings.Join(Missing([]Kind{AptCacherNG, Nginx, Direct}), "; ")
	for _, want := range []string{"apt-cacher-ng (Debian package apt-cacher-ng)", "nginx (Debian package nginx-light)"} {
		if !strings.Contains(miss, want) {
			t.Errorf("Missing = %q, want it to name %q", miss, want)
		}
	}
}

func TestHasFlag(t *testing.T) {
	t.Parallel()
	bin := t.TempDir() + "/fake-pkgswarm"
	help := "#!/bin/sh\ncat <<'X'\nOPTIONS:\n   --swarm value    BitTorrent tier (default: \"lan\")\n   --swarm-listen value  address\nX\n"
	if err := os.WriteFile(bin, []byte(help), 0o755); err != nil {
		t.Fatal(err)
	}
	if !hasFlag(bin, "--swarm") || hasFlag(bin, "--hold") || hasFlag(bin+"-missing", "--swarm") {
		t.Fatal("hasFlag: wrong answer for --swarm, --hold or a missing binary")
	}
}
