package proxy_test

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// rpmRig is a Mageia-shaped tree (each medium also an rpm-md repository)
// behind a real origin server, and a pkgswarm node in front of it.
type rpmRig struct {
	*noderig.Node
	t      *testing.T
	tree   *rpmrepo.Tree
	opts   rpmrepo.Options
	origin *testrepo.Origin
	dir    string

	mu     sync.Mutex
	ranges []string // Range headers clients sent to the node
}

var defaultRPMs = []rpmrepo.Package{
	{Name: "alpha", Size: 20 << 10, Seed: 1},
	{Name: "bravo", Version: "2.1", Size: 100 << 10, Seed: 2},
	{Name: "charlie", Version: "0.9", Size: 3 << 20, Seed: 3, Medium: "core/updates"},
}

// newRPMRig builds a tree of pkgs (defaultRPMs when nil) and starts a node
// configured by cfg (may be nil).
func newRPMRig(t *testing.T, o rpmrepo.Options, cfg func(*node.Config)) *rpmRig {
	t.Helper()
	if o.Packages == nil {
		o.Packages = defaultRPMs
	}
	tree := rpmrepo.Build(t, o)
	r := &rpmRig{t: t, tree: tree, opts: o, origin: testrepo.Serve(t, tree.Dir), dir: t.TempDir()}
	r.start(cfg)
	return r
}

// start (re)starts the node on the rig's store directory.
func (r *rpmRig) start(cfg func(*node.Config)) {
	if r.Node != nil {
		r.Node.Stop()
	}
	r.Node = noderig.Start(r.t, noderig.Options{Dir: r.dir, OriginURLs: []string{r.origin.URL},
		Config: func(c *node.Config) {
			// Long enough that a refused file is answered with its status,
			// not streamed and aborted.
			c.Hold = 20 * time.Second
			if cfg != nil {
				cfg(c)
			}
		},
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if rg := req.Header.Get("Range"); rg != "" {
					r.mu.Lock()
					r.ranges = append(r.ranges, req.RequestURI+" "+rg)
					r.mu.Unlock()
				}
				h.ServeHTTP(w, req)
			})
		}})
}

func (r *rpmRig) rangeRequests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

// keys returns a KeySet of the tree's signing key.
func (r *rpmRig) keys() *rpmsig.KeySet { return keySetOf(r.t, r.tree.Key) }

func keySetOf(t *testing.T, k *rpmrepo.Key) *rpmsig.KeySet {
	t.Helper()
	ks, err := rpmsig.LoadKeys(k.Armored)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// originURL is the origin URL of a path below the tree's document root.
func (r *rpmRig) originURL(p string) string { return r.origin.URL + "/" + p }

// prefixURL is the same URL in pkgswarm's prefix form.
func (r *rpmRig) prefixURL(p string) string { return r.PrefixURL(r.originURL(p)) }

// get fetches an origin path through the proxy in forward mode.
func (r *rpmRig) get(p string) (*http.Response, []byte) {
	r.t.Helper()
	resp, err := r.ProxyClient().Get(r.originURL(p))
	if err != nil {
		r.t.Fatalf("GET %s through the proxy: %v", p, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("GET %s through the proxy: reading: %v", p, err)
	}
	return resp, body
}

// medium returns the tree's medium at path p ("core/release").
func (r *rpmRig) medium(p string) *rpmrepo.Medium {
	for _, m := range r.tree.Media {
		if m.Path == p {
			return m
		}
	}
	r.t.Fatalf("no medium %s", p)
	return nil
}

// replace puts bad in place of the rpm b on the origin and rewrites the
// medium's synthesis and MD5SUM so that they list bad's size, as a mirror
// would publish them: the metadata then names the bad file exactly and only
// the signature check can refuse it.
func (r *rpmRig) replace(b *rpmrepo.Built, bad string) {
	t := r.t
	t.Helper()
	data, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.File, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := r.medium(b.Medium)
	oldLine := fmt.Sprintf("@filesize@%d\n@info@%s@", b.Size, b.NEVRA)
	newLine := fmt.Sprintf("@filesize@%d\n@info@%s@", len(data), b.NEVRA)
	if !bytes.Contains(m.SynthesisPlain, []byte(oldLine)) {
		t.Fatalf("synthesis of %s has no %q", m.Path, oldLine)
	}
	m.SynthesisPlain = bytes.Replace(m.SynthesisPlain, []byte(oldLine), []byte(newLine), 1)
	r.writeSynthesis(m)
	b.Size = int64(len(data))
}

// writeSynthesis compresses m.SynthesisPlain as the rig's options say and
// writes it with a matching MD5SUM.
func (r *rpmRig) writeSynthesis(m *rpmrepo.Medium) {
	t := r.t
	var z bytes.Buffer
	if r.opts.Synthesis == rpmrepo.Gzip {
		w := gzip.NewWriter(&z)
		w.Write(m.SynthesisPlain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		w, err := xz.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(m.SynthesisPlain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m.Synthesis = z.Bytes()
	m.MD5SUM = []byte(fmt.Sprintf("%x  synthesis.hdlist.cz\n", md5.Sum(m.Synthesis)))
	info := filepath.Join(m.Dir, "media_info")
	// Later mtimes than the originals, so conditional GETs see a change.
	mt := time.Now().Add(time.Minute)
	for name, data := range map[string][]byte{"synthesis.hdlist.cz": m.Synthesis, "MD5SUM": m.MD5SUM} {
		p := filepath.Join(info, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

// urpmiClient replays what urpmi does, with the curl command line of
// urpm::download::sync_curl: one curl per batch of files, run in the
// download directory, "-x PROXY -H Pragma:" in proxy mode.
type urpmiClient struct {
	t      *testing.T
	r      *rpmRig
	prefix bool   // medium URLs in prefix form instead of -x
	dir    string // download directory (urpmi's cachedir/partial)
}

func (r *rpmRig) urpmi(prefix bool) *urpmiClient {
	return &urpmiClient{t: r.t, r: r, prefix: prefix, dir: r.t.TempDir()}
}

func (c *urpmiClient) url(p string) string {
	if c.prefix {
		return c.r.prefixURL(p)
	}
	return c.r.originURL(p)
}

// curlArgs is sync_curl's command line for files (urpm/download.pm of
// urpmi 8: "-q [--continue-at -] [-x PROXY -H Pragma:] [-s] --location-trusted
// -R -f --disable-epsv --connect-timeout 60 --anyauth --stderr - -O URL...";
// older releases also passed -k, now only with no-certificate-check).
func (c *urpmiClient) curlArgs(resume bool, urls ...string) []string {
	args := []string{"-q"}
	if resume {
		args = append(args, "--continue-at", "-")
	}
	if !c.prefix {
		args = append(args, "-x", c.r.URL, "-H", "Pragma:")
	}
	args = append(args, "-s", "--location-trusted", "-R", "-f", "--disable-epsv",
		"--connect-timeout", "60", "--anyauth", "--stderr", "-")
	for _, u := range urls {
		args = append(args, "-O", u)
	}
	return args
}

// curl fetches paths below the tree root into the download directory.
func (c *urpmiClient) curl(resume bool, paths ...string) ([]byte, error) {
	var urls []string
	for _, p := range paths {
		urls = append(urls, c.url(p))
	}
	cmd := exec.Command("curl", c.curlArgs(resume, urls...)...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir, "LC_ALL=C"}
	return cmd.CombinedOutput()
}

func (c *urpmiClient) mustCurl(resume bool, paths ...string) {
	c.t.Helper()
	if out, err := c.curl(resume, paths...); err != nil {
		c.t.Fatalf("curl %s: %v\n%s", strings.Join(paths, " "), err, out)
	}
}

// file returns a downloaded file's bytes (curl -O names it by the URL's
// last segment).
func (c *urpmiClient) file(p string) []byte {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, path.Base(p)))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// addMedia replays urpmi.addmedia --distrib: media.cfg, then per medium
// MD5SUM, the synthesis (checked against MD5SUM, as urpmi does) and pubkey.
// Each file lands in its own subdirectory, as urpmi keeps one per medium.
func (c *urpmiClient) addMedia() {
	t := c.t
	t.Helper()
	tr := c.r.tree
	c.mustCurl(false, tr.Prefix+"/media/media_info/media.cfg")
	if got := c.file("media.cfg"); !bytes.Equal(got, tr.MediaCfg) {
		t.Fatalf("media.cfg through the proxy differs from the origin's")
	}
	for _, m := range tr.Media {
		base := c.dir
		c.dir = filepath.Join(base, strings.ReplaceAll(m.Path, "/", "_"))
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		info := m.URLPath + "/media_info/"
		c.mustCurl(false, info+"MD5SUM")
		sums := c.file("MD5SUM")
		c.mustCurl(false, info+"synthesis.hdlist.cz")
		synth := c.file("synthesis.hdlist.cz")
		if want := fmt.Sprintf("%x  synthesis.hdlist.cz", md5.Sum(synth)); !strings.Contains(string(sums), want) {
			t.Fatalf("medium %s: synthesis md5 does not match MD5SUM %q", m.Path, sums)
		}
		c.mustCurl(false, info+"pubkey")
		if !bytes.Equal(c.file("pubkey"), tr.Key.Armored) {
			t.Fatalf("medium %s: pubkey differs from the origin's", m.Path)
		}
		c.dir = base
	}
}

// clip shortens a response body for a failure message.
func clip(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}
