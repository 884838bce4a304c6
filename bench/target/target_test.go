package target

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/bench/origin"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
)

func TestStartUnknownKind(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), Options{Kind: "squid", WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), `unknown kind "squid"`) {
		t.Fatalf("Start(squid) = %v", err)
	}
}

// originOf starts a benchmark origin serving one file, name, of body; it
// stops with the test.
func originOf(t *testing.T, name string, body []byte) *origin.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := origin.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// TestDirect: the origin itself is a target without a process.
func TestDirect(t *testing.T) {
	t.Parallel()
	o := originOf(t, "f", []byte("x"))
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

// TestNginxProxyKeepsNothing: nginx-proxy passes every GET to the origin (it
// answers none from a copy of its own), the origin's bytes unchanged, over
// kept-alive connections.
func TestNginxProxyKeepsNothing(t *testing.T) {
	t.Parallel()
	testtool.Need(t, "nginx", "nginx-light")
	body := bytes.Repeat([]byte("relayed bytes "), 40000) // 560 KB: more than nginx's buffers
	o := originOf(t, "f.deb", body)
	r, err := Start(context.Background(), Options{Kind: NginxProxy, WorkDir: t.TempDir(), Origin: o.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if r.PID == 0 || r.Proxy != "" || r.CacheDir != "" || !strings.HasPrefix(r.Base, "http://127.0.0.1:") || r.Base == o.URL {
		t.Fatalf("nginx-proxy target = %+v", r)
	}
	c := r.Client(1)
	for i := range 3 {
		resp, err := c.Get(r.URL("/f.deb"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			t.Fatalf("GET %d through nginx-proxy: status %d, %d bytes (want %d), %v", i+1, resp.StatusCode, len(got), len(body), err)
		}
	}
	if n, _ := o.Count("/f.deb"); n != 3 {
		t.Errorf("the origin served the file %d times for three GETs through nginx-proxy, want 3: it must keep nothing", n)
	}
	if n := o.Conns(); n != 1 {
		t.Errorf("nginx-proxy opened %d connections to the origin for three GETs one after another, want 1 kept alive", n)
	}
}

// TestKindRoles: which kinds apt runs through, and which answer from files
// they hold (the hot and small steps, herd, tamper and outage measure them).
func TestKindRoles(t *testing.T) {
	t.Parallel()
	for k, want := range map[Kind][2]bool{ // {Apt, Holds}
		Direct: {true, true}, Pkgswarm: {true, true}, AptCacherNG: {true, true}, Approx: {true, true},
		Nginx: {false, true}, NginxProxy: {true, false},
	} {
		if got := [2]bool{k.Apt(), k.Holds()}; got != want {
			t.Errorf("%s: Apt, Holds = %v, want %v", k, got, want)
		}
	}
}
