package aptenv_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// forwardProxy is a minimal real HTTP forward proxy: apt sends it
// absolute-URI requests, it records them and forwards them.
type forwardProxy struct {
	mu   sync.Mutex
	seen []string // absolute request URIs; protected by mu
	rp   *httputil.ReverseProxy
}

func newForwardProxy(t *testing.T) (*forwardProxy, string) {
	p := &forwardProxy{rp: &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.Out.URL = r.In.URL },
		Transport: &http.Transport{Proxy: nil},
	}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !r.URL.IsAbs() {
		http.Error(w, "forward proxy: want an absolute URI", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.URL.String())
	p.mu.Unlock()
	p.rp.ServeHTTP(w, r)
}

func (p *forwardProxy) count(sub string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, u := range p.seen {
		if strings.Contains(u, sub) {
			n++
		}
	}
	return n
}

// TestThroughProxyAndPrefix: with Options.Proxy apt sends every request to
// the proxy as an absolute URI; a repository under a URL path prefix works;
// Reconfigure switches an existing client from direct to proxied, and the
// second update revalidates with conditional requests.
func TestThroughProxyAndPrefix(t *testing.T) {
	root := t.TempDir()
	r := testrepo.Build(t, testrepo.Options{Packages: testPackages[:1]})
	// Serve the repository under /debian, as a mirror does.
	if err := os.Symlink(r.Dir, filepath.Join(root, "debian")); err != nil {
		t.Fatal(err)
	}
	o := testrepo.Serve(t, root)
	src := aptenv.Source{URL: o.URL + "/debian", Suite: r.Suite, Keyring: r.Key.KeyringPath}

	c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{src}})
	if _, err := c.Update(ctx(t)); err != nil {
		t.Fatalf("direct update: %v", err)
	}
	lists, err := c.Lists()
	if err != nil || len(lists) < 2 {
		t.Fatalf("lists after update: %v %v", lists, err)
	}

	p, proxyURL := newForwardProxy(t)
	if err := c.Reconfigure(aptenv.Options{Proxy: proxyURL, Sources: []aptenv.Source{src}}); err != nil {
		t.Fatal(err)
	}
	o.ResetLog()
	if _, err := c.Update(ctx(t)); err != nil {
		t.Fatalf("proxied update: %v", err)
	}
	if n := p.count(o.URL + "/debian/dists/stable/InRelease"); n != 1 {
		t.Errorf("proxy saw InRelease %d times, want 1", n)
	}
	var revalidated bool
	for _, e := range o.Log() {
		if strings.HasSuffix(e.Path, "/InRelease") && e.IfModifiedSince != "" && e.Status == http.StatusNotModified {
			revalidated = true
		}
	}
	if !revalidated {
		t.Errorf("second update did not revalidate InRelease: %+v", o.Log())
	}
	if _, err := c.Download(ctx(t), "hello"); err != nil {
		t.Fatalf("proxied download: %v", err)
	}
	if n := p.count(r.Debs["hello"].Path); n != 1 {
		t.Errorf("proxy saw the .deb %d times, want 1", n)
	}
	got, err := c.Archives()
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Debs["hello"]; got[d.FileName()] != d.SHA256 {
		t.Errorf("archives %v, want %s = %s", got, d.FileName(), d.SHA256)
	}
	// Clean empties the archives, so the next download fetches again.
	if err := c.Clean(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Archives(); err != nil || len(got) != 0 {
		t.Fatalf("archives after Clean: %v %v", got, err)
	}
	if _, err := c.Download(ctx(t), "hello"); err != nil {
		t.Fatal(err)
	}
	if n := p.count(r.Debs["hello"].Path); n != 2 {
		t.Errorf("proxy saw the .deb %d times after Clean and Download, want 2", n)
	}
}

// TestProxyDownIsAnError: a proxy that refuses connections makes update
// fail (Acquire::Retries is 0, warnings are errors).
func TestProxyDownIsAnError(t *testing.T) {
	r := testrepo.Build(t, testrepo.Options{Packages: testPackages[:1]})
	o := testrepo.Serve(t, r.Dir)
	dead := testrepo.Serve(t, t.TempDir())
	dead.Stop()
	c := aptenv.New(t, aptenv.Options{Proxy: dead.URL, Sources: []aptenv.Source{source(r, o)}})
	out, err := c.Update(ctx(t))
	if err == nil {
		t.Fatalf("update through a dead proxy succeeded:\n%s", out)
	}
	if o.Requests("") != 0 {
		t.Errorf("apt went around the proxy: %+v", o.Log())
	}
	t.Logf("failed as it should: %v", err)
}

// TestHTTPSOrigin: apt fetches over TLS from a ServeTLS origin whose
// certificate it is told to trust, and refuses it otherwise.
func TestHTTPSOrigin(t *testing.T) {
	r := testrepo.Build(t, testrepo.Options{Packages: testPackages[:1]})
	o := testrepo.ServeTLS(t, r.Dir)
	src := aptenv.Source{URL: o.URL, Suite: r.Suite, Keyring: r.Key.KeyringPath}
	c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{src}})
	if out, err := c.Update(ctx(t)); err == nil {
		t.Fatalf("update trusted an unknown certificate:\n%s", out)
	}
	if err := c.Reconfigure(aptenv.Options{Sources: []aptenv.Source{src},
		Config: []string{`Acquire::https::CaInfo "` + o.CertFile() + `";`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ctx(t)); err != nil {
		t.Fatalf("update over TLS: %v", err)
	}
	if _, err := c.Download(ctx(t), "hello"); err != nil {
		t.Fatalf("download over TLS: %v", err)
	}
	got, err := c.Archives()
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Debs["hello"]; got[d.FileName()] != d.SHA256 {
		t.Errorf("archives %v, want %s = %s", got, d.FileName(), d.SHA256)
	}
}
