package proxy_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// TestUrpmiReplayBothModes replays urpmi's request sequence with real curl
// (and aria2c's Range requests) through the proxy in forward mode, then a
// second client in prefix mode: the second is served from the cache, with
// MD5SUM revalidated and no rpm or synthesis fetched again from the origin.
func TestUrpmiReplayBothModes(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{}, nil)
	tr := r.tree

	first := r.urpmi(false)
	first.addMedia()
	// urpmi installs: one curl for the batch of rpms of each medium; the big
	// one first with aria2c, which splits it into Range requests.
	big := tr.Package("charlie-0.9-1.mga9.noarch")
	// sync_aria2's options (urpm/download.pm) without a mirror list, plus a
	// split into 1 MiB pieces over three connections.
	aria := exec.Command("aria2c", "--auto-file-renaming=false", "--ftp-pasv", "--follow-metalink=mem", "--summary-interval=0",
		"-Z", "-j1", "--allow-overwrite=true", "--http-proxy="+r.URL,
		"-s3", "-x3", "-k1M", "--min-split-size=1M", "--file-allocation=none",
		"-d", first.dir, r.originURL(big.URLPath))
	aria.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + first.dir}
	if out, err := aria.CombinedOutput(); err != nil {
		t.Fatalf("aria2c: %v\n%s", err, out)
	}
	if len(r.rangeRequests()) < 2 {
		t.Errorf("aria2c sent %d Range requests (%q), want a split download", len(r.rangeRequests()), r.rangeRequests())
	}
	var paths []string
	for _, m := range tr.Media {
		for _, b := range m.Packages {
			if b != big {
				paths = append(paths, b.URLPath)
			}
		}
	}
	first.mustCurl(false, paths...)
	first.checkRPMs(tr)
	rpmGets := r.origin.Requests(".rpm")
	if want := 3; rpmGets != want {
		t.Errorf("first client: %d origin rpm GETs, want %d", rpmGets, want)
	}
	for _, b := range []*rpmrepo.Built{big, tr.Package("alpha-1.0-1.mga9.noarch")} {
		d := store.DigestOf(first.file(b.URLPath))
		if !noderig.Eventually(func() bool { return r.Store.Shareable(d) }) {
			t.Errorf("%s is not marked verified for peers", b.NEVRA)
		}
	}

	synthGets, md5Gets := r.origin.Requests("synthesis.hdlist.cz"), r.origin.Requests("MD5SUM")
	second := r.urpmi(true)
	second.addMedia()
	// urpmi resuming a partial download: curl --continue-at - sends a Range.
	half := big.Size / 2
	full, _ := os.ReadFile(big.File)
	if err := os.WriteFile(filepath.Join(second.dir, filepath.Base(big.File)), full[:half], 0o644); err != nil {
		t.Fatal(err)
	}
	nRanges := len(r.rangeRequests())
	second.mustCurl(true, big.URLPath)
	if len(r.rangeRequests()) != nRanges+1 {
		t.Errorf("curl --continue-at - sent no Range request")
	}
	second.mustCurl(false, paths...)
	second.checkRPMs(tr)

	if got := r.origin.Requests(".rpm"); got != rpmGets {
		t.Errorf("second client: %d more origin rpm GETs, want 0", got-rpmGets)
	}
	if got := r.origin.Requests("synthesis.hdlist.cz"); got != synthGets {
		t.Errorf("second client: %d more origin synthesis GETs, want 0 (MD5SUM did not change)", got-synthGets)
	}
	if got := r.origin.Requests("MD5SUM"); got != md5Gets+len(tr.Media) {
		t.Errorf("second client: %d origin MD5SUM GETs, want %d (revalidated on every request)", got-md5Gets, len(tr.Media))
	}
	seen := map[string]bool{}
	for _, req := range r.origin.Log() {
		if !strings.HasSuffix(req.Path, "/MD5SUM") {
			continue
		}
		if seen[req.Path] && req.IfModifiedSince == "" && req.IfNoneMatch == "" {
			t.Errorf("MD5SUM revalidation of %s was not a conditional GET", req.Path)
		}
		seen[req.Path] = true
	}
	st := r.Trust.RPMRepos()
	if len(st) < 2 || st[0].Kind != "urpmi" || len(st[0].Keys) != 1 {
		t.Errorf("RPMStatus = %+v, want both media pinned to one key", st)
	}

	// A peer asking by name key (derived from the medium key, NEVRA and
	// synthesis size alone) gets the verified rpm.
	for _, b := range []*rpmrepo.Built{big, tr.Package("alpha-1.0-1.mga9.noarch")} {
		key := urpmi.NameKey(r.keys().KeyIDs(), b.NEVRA, b.Size)
		req := httptest.NewRequest(http.MethodGet, "/_pkgswarm/v1/rpm/"+key, nil)
		req.SetPathValue("key", key)
		rec := httptest.NewRecorder()
		req.RemoteAddr = "127.0.0.1:1"
		r.Handler.ServeHTTP(rec, req)
		want, _ := os.ReadFile(b.File)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) || rec.Header().Get("X-Pkgswarm-Sha256") != hex.EncodeToString(b.SHA256) {
			t.Errorf("peer request for %s by name key: %d, %d bytes, sha256 %q", b.NEVRA, rec.Code, rec.Body.Len(), rec.Header().Get("X-Pkgswarm-Sha256"))
		}
	}
	unknown := urpmi.NameKey(r.keys().KeyIDs(), big.NEVRA, big.Size+1)
	req := httptest.NewRequest(http.MethodGet, "/_pkgswarm/v1/rpm/"+unknown, nil)
	req.SetPathValue("key", unknown)
	rec := httptest.NewRecorder()
	req.RemoteAddr = "127.0.0.1:1"
	r.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("peer request for an unknown name key: %d, want 404", rec.Code)
	}

	// A dnf client of the same medium is served the same rpms from the
	// cache, by the digests of the medium's rpm-md metadata (unsigned, as
	// Mageia's are).
	m := r.medium("core/release")
	dnf := r.newDNF(m.URLPath, false, false)
	if out, err := dnf.download("alpha", "bravo"); err != nil {
		t.Fatalf("dnf after urpmi: %v\n%s", err, out)
	}
	dnf.check(m)
	if got := r.origin.Requests(".rpm"); got != rpmGets {
		t.Errorf("dnf after urpmi: %d more origin rpm GETs, want 0", got-rpmGets)
	}
}

// checkRPMs checks every rpm the client got against the tree, and with
// rpmkeys --checksig (the tree's key imported into a temporary rpmdb).
func (c *urpmiClient) checkRPMs(tr *rpmrepo.Tree) {
	t := c.t
	t.Helper()
	var files []string
	for _, m := range tr.Media {
		for _, b := range m.Packages {
			want, _ := os.ReadFile(b.File)
			if got := c.file(b.URLPath); !bytes.Equal(got, want) {
				t.Fatalf("%s: got %d bytes that differ from the origin's %d", b.NEVRA, len(got), len(want))
			}
			files = append(files, filepath.Join(c.dir, filepath.Base(b.File)))
		}
	}
	ok, out := rpmrepo.CheckSig(t, []*rpmrepo.Key{tr.Key}, files...)
	for i := range files {
		if !ok[i] {
			t.Errorf("rpmkeys --checksig %s: %s", files[i], out[i])
		}
	}
}

// TestUrpmiRefusesBadRPMs: an rpm whose payload was altered, one re-signed
// by an unknown key and an unsigned one are each refused with a one-line
// reason, from a synthesis that lists their exact size, and never cached.
func TestUrpmiRefusesBadRPMs(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{Synthesis: rpmrepo.Gzip, NoRepodata: true, Packages: []rpmrepo.Package{
		{Name: "good", Size: 10 << 10, Seed: 10},
		{Name: "tampered", Size: 30 << 10, Seed: 11},
		{Name: "resigned", Size: 10 << 10, Seed: 12},
		{Name: "unsigned", Size: 10 << 10, Seed: 13},
	}}, nil)
	other := rpmrepo.NewKey(t, "")
	tmp := t.TempDir()
	cases := []struct {
		name   string
		make   func(src, dst string)
		reason string
	}{
		{"tampered", func(src, dst string) { rpmrepo.Tampered(t, src, dst) }, "payload digest mismatch"},
		{"resigned", func(src, dst string) { rpmrepo.Resigned(t, src, dst, other) }, "signed by no trusted key"},
		{"unsigned", func(src, dst string) { rpmrepo.Unsigned(t, src, dst) }, "not signed"},
	}
	bad := map[string]string{}
	for _, tc := range cases {
		b := r.tree.Package(tc.name + "-1.0-1.mga9.noarch")
		dst := filepath.Join(tmp, tc.name+".rpm")
		tc.make(b.File, dst)
		r.replace(b, dst)
		bad[tc.name] = dst
	}
	c := r.urpmi(false)
	c.addMedia()
	c.mustCurl(false, r.tree.Package("good-1.0-1.mga9.noarch").URLPath)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := r.tree.Package(tc.name + "-1.0-1.mga9.noarch")
			for attempt := 1; attempt <= 2; attempt++ {
				before := r.origin.Requests(b.URLPath)
				resp, body := r.get(b.URLPath)
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("attempt %d: %d %s, want 502", attempt, resp.StatusCode, clip(body))
				}
				msg := strings.TrimSuffix(string(body), "\n")
				if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, b.NEVRA) {
					t.Errorf("reason %q: want one line naming %s and saying %q", msg, b.NEVRA, tc.reason)
				}
				if got := r.origin.Requests(b.URLPath); got != before+1 {
					t.Errorf("attempt %d: %d origin GETs, want 1 (nothing cached)", attempt, got-before)
				}
			}
			data, _ := os.ReadFile(bad[tc.name])
			if r.Store.HasBlob(store.DigestOf(data)) {
				t.Errorf("the refused rpm is in the store")
			}
			// urpmi's own download (curl -f) fails too.
			if out, err := c.curl(false, b.URLPath); err == nil {
				t.Errorf("curl succeeded on a refused rpm: %s", out)
			}
		})
	}
	fails := r.State().Failures
	if len(fails) < len(cases) {
		t.Errorf("status lists %d verification failures, want at least %d", len(fails), len(cases))
	}
}

// TestUrpmiPubkeyPinned: the medium's pubkey is pinned on first use; a later
// pubkey with another key is refused, and so are rpms that key signed,
// unless that key is configured.
func TestUrpmiPubkeyPinned(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{NoRepodata: true, Packages: []rpmrepo.Package{
		{Name: "alpha", Size: 10 << 10, Seed: 1},
		{Name: "bravo", Size: 10 << 10, Seed: 2},
	}}, nil)
	c := r.urpmi(false)
	c.addMedia()

	// The mirror now publishes another key and an rpm signed by it.
	evil := rpmrepo.NewKey(t, "")
	m := r.medium("core/release")
	pub := filepath.Join(m.Dir, "media_info", "pubkey")
	if err := os.WriteFile(pub, evil.Armored, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	os.Chtimes(pub, later, later)
	b := r.tree.Package("bravo-1.0-1.mga9.noarch")
	dst := filepath.Join(t.TempDir(), "bravo.rpm")
	rpmrepo.Resigned(t, b.File, dst, evil)
	r.replace(b, dst)
	c.mustCurl(false, m.URLPath+"/media_info/MD5SUM", m.URLPath+"/media_info/synthesis.hdlist.cz")

	r.start(func(c *node.Config) { c.Revalidate = time.Nanosecond })
	resp, body := r.get(m.URLPath + "/media_info/pubkey")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "pinned") {
		t.Errorf("changed pubkey: %d %s, want 502 naming the pinned key", resp.StatusCode, clip(body))
	}
	resp, body = r.get(b.URLPath)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "signed by no trusted key") {
		t.Errorf("rpm signed by the new key: %d %s, want 502", resp.StatusCode, clip(body))
	}
	if fails := r.State().Failures; len(fails) < 2 {
		t.Errorf("status lists %d failures, want the pubkey and the rpm", len(fails))
	}

	// Configured, the new key is accepted for both.
	r.start(func(c *node.Config) { c.RPMKeys = keySetOf(t, evil); c.Revalidate = time.Nanosecond })
	if resp, body := r.get(m.URLPath + "/media_info/pubkey"); resp.StatusCode != http.StatusOK {
		t.Errorf("configured pubkey: %d %s, want 200", resp.StatusCode, clip(body))
	}
	if resp, body := r.get(b.URLPath); resp.StatusCode != http.StatusOK {
		t.Errorf("rpm signed by a configured key: %d %s, want 200", resp.StatusCode, clip(body))
	}
	// The old key is still pinned for rpms it signed.
	if resp, body := r.get(r.tree.Package("alpha-1.0-1.mga9.noarch").URLPath); resp.StatusCode != http.StatusOK {
		t.Errorf("rpm signed by the pinned key: %d %s, want 200", resp.StatusCode, clip(body))
	}
}

// TestUrpmiSynthesisMatchesMD5SUM: a synthesis that does not match the
// MD5SUM served is never served; a mirror's good copy is; MD5SUM and the
// synthesis keep being served from the cache when the origin is down.
func TestUrpmiSynthesisMatchesMD5SUM(t *testing.T) {
	o := rpmrepo.Options{NoRepodata: true, Packages: []rpmrepo.Package{{Name: "alpha", Size: 10 << 10, Seed: 1}}}
	tree := rpmrepo.Build(t, o)
	mirror := testrepo.Serve(t, tree.Dir)
	r := &rpmRig{t: t, tree: tree, opts: o, origin: testrepo.Serve(t, tree.Dir), dir: t.TempDir()}
	m := tree.Media[0]
	synth := m.URLPath + "/media_info/synthesis.hdlist.cz"
	r.origin.Tamper("synthesis.hdlist.cz", func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 1
		return b
	})
	r.start(nil)
	if resp, body := r.get(m.URLPath + "/media_info/MD5SUM"); resp.StatusCode != http.StatusOK {
		t.Fatalf("MD5SUM: %d %s", resp.StatusCode, clip(body))
	}
	resp, body := r.get(synth)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "does not match the MD5SUM") {
		t.Fatalf("tampered synthesis: %d %s, want 502", resp.StatusCode, clip(body))
	}
	// With nothing verified, the rpm is a plain URL-cached file.
	b := tree.Media[0].Packages[0]
	if resp, _ := r.get(b.URLPath); resp.StatusCode != http.StatusOK || r.Store.Shareable(store.Digest(b.SHA256)) {
		t.Errorf("rpm without a verified synthesis: %d, verified %v; want 200 and not shareable", resp.StatusCode, r.Store.Shareable(store.Digest(b.SHA256)))
	}

	// A mirror has the good copy.
	mu, _ := mirrorPort(mirror)
	r.start(func(c *node.Config) {
		c.AllowPorts = append(c.AllowPorts, mu)
		c.Mirrors = map[string][]string{r.origin.URL: {mirror.URL}}
	})
	resp, body = r.get(synth)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, m.Synthesis) {
		t.Fatalf("synthesis with a good mirror: %d, %d bytes; want 200 and the mirror's bytes", resp.StatusCode, len(body))
	}
	if resp, _ := r.get(b.URLPath + ".x"); resp.StatusCode == http.StatusOK {
		t.Errorf("a path that is no repository file was served")
	}

	// Origin and mirror down: the held MD5SUM and synthesis still serve.
	r.origin.Stop()
	mirror.Stop()
	for _, p := range []string{m.URLPath + "/media_info/MD5SUM", synth} {
		if resp, body := r.get(p); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with origins down: %d %s, want the held copy", p, resp.StatusCode, clip(body))
		}
	}
}

func mirrorPort(o *testrepo.Origin) (int, error) {
	_, p, _ := strings.Cut(o.Addr, ":")
	var n int
	_, err := fmt.Sscan(p, &n)
	return n, err
}

// TestUrpmiHerdOneOriginGet: many clients asking for one rpm at once cause
// one origin GET.
func TestUrpmiHerdOneOriginGet(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{NoRepodata: true, Packages: []rpmrepo.Package{{Name: "alpha", Size: 2 << 20, Seed: 1}}}, nil)
	c := r.urpmi(false)
	c.addMedia()
	b := r.tree.Media[0].Packages[0]
	r.origin.Throttle(".rpm", 8<<20)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			resp, body := r.get(b.URLPath)
			if resp.StatusCode != http.StatusOK || int64(len(body)) != b.Size {
				errs <- fmt.Errorf("herd client: status %d, %d of %d bytes", resp.StatusCode, len(body), b.Size)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := r.origin.Requests(".rpm"); n != 1 {
		t.Errorf("%d origin rpm GETs for 8 clients, want 1", n)
	}
}

// TestUrpmiOfflineAfterWarmRun: after one urpmi run, a restarted proxy in
// offline mode with the origin gone serves a second urpmi run entirely.
func TestUrpmiOfflineAfterWarmRun(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{NoRepodata: true, Packages: []rpmrepo.Package{
		{Name: "alpha", Size: 10 << 10, Seed: 1},
		{Name: "bravo", Size: 10 << 10, Seed: 2, Medium: "core/updates"},
	}}, nil)
	var paths []string
	for _, m := range r.tree.Media {
		for _, b := range m.Packages {
			paths = append(paths, b.URLPath)
		}
	}
	warm := r.urpmi(false)
	warm.addMedia()
	warm.mustCurl(false, paths...)

	r.origin.Stop()
	r.start(func(c *node.Config) { c.Offline = true })
	cold := r.urpmi(true)
	cold.addMedia()
	cold.mustCurl(false, paths...)
	cold.checkRPMs(r.tree)
}

// TestUrpmiCacheSurvivesKeyChange: configuring another key changes the
// name keys of a medium's rpms; the held copies are proven again and served
// without an origin GET.
func TestUrpmiCacheSurvivesKeyChange(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{NoRepodata: true, Packages: []rpmrepo.Package{{Name: "alpha", Size: 10 << 10, Seed: 1}}}, nil)
	b := r.tree.Media[0].Packages[0]
	c := r.urpmi(false)
	c.addMedia()
	c.mustCurl(false, b.URLPath)
	gets := r.origin.Requests(".rpm")

	other := rpmrepo.NewKey(t, "")
	r.start(func(c *node.Config) { c.RPMKeys = keySetOf(t, other) })
	if resp, body := r.get(b.URLPath); resp.StatusCode != http.StatusOK || int64(len(body)) != b.Size {
		t.Fatalf("after a key change: %d, %d bytes", resp.StatusCode, len(body))
	}
	if got := r.origin.Requests(".rpm"); got != gets {
		t.Errorf("after a key change: %d origin rpm GETs, want 0", got-gets)
	}
	key := urpmi.NameKey(append(keySetOf(t, other).KeyIDs(), r.keys().KeyIDs()...), b.NEVRA, b.Size)
	if d, err := r.Store.Name(key); err != nil || d != store.Digest(b.SHA256) {
		t.Errorf("the new name key does not map to the rpm")
	}
}
