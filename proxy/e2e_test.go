package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// rig is one signed repository behind a real origin server, and a pkgswarm
// node in front of it (the product's wiring, internal/node).
type rig struct {
	*noderig.Node
	t      *testing.T
	repo   *testrepo.Repo
	origin *testrepo.Origin
}

type rigOptions struct {
	packages   []testrepo.Package
	untrusted  bool          // the node does not trust the repository key
	revalidate time.Duration // 0: 27s default
	cfg        func(*node.Config)
	dir        string   // store dir; "" = temp
	maxBytes   int64    // store bound; 0 = unbounded
	origins    []string // more origins to allow (mirrors)
}

var defaultPackages = []testrepo.Package{
	{Name: "alpha", Version: "1.0", Size: 20 << 10, Seed: 1},
	{Name: "bravo", Version: "2.1", Size: 100 << 10, Seed: 2},
	{Name: "charlie", Version: "0.9", Size: 3 << 20, Seed: 3},
	{Name: "delta", Version: "1.0-1", Size: 1 << 10, Seed: 4},
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.packages == nil {
		o.packages = defaultPackages
	}
	repo := testrepo.Build(t, testrepo.Options{Packages: o.packages})
	origin := testrepo.Serve(t, repo.Dir)
	r := &rig{t: t, repo: repo, origin: origin}
	r.start(o)
	return r
}

// start starts the node on o.dir (or a new temp dir).
func (r *rig) start(o rigOptions) {
	t := r.t
	var kr *apt.Keyring
	if !o.untrusted {
		var err error
		if kr, err = apt.LoadKeyring(r.repo.Key.KeyringPath); err != nil {
			t.Fatal(err)
		}
	}
	r.Node = noderig.Start(t, noderig.Options{Dir: o.dir, MaxBytes: o.maxBytes, OriginURLs: append([]string{r.origin.URL}, o.origins...),
		Config: func(c *node.Config) {
			c.AptKeyring, c.Revalidate = kr, o.revalidate
			if o.cfg != nil {
				o.cfg(c)
			}
		}})
}

// client returns an isolated apt-get using the node in forward mode
// (prefix=false) or URL-prefix mode.
func (r *rig) client(prefix bool) *aptenv.Client {
	src := aptenv.Source{URL: r.origin.URL, Keyring: r.repo.Key.KeyringPath, Suite: r.repo.Suite}
	opts := aptenv.Options{Sources: []aptenv.Source{src}}
	if prefix {
		opts.Sources[0].URL = r.PrefixURL(r.origin.URL)
	} else {
		opts.Proxy = r.URL
	}
	return aptenv.New(r.t, opts)
}

func (r *rig) packageNames() []string {
	var names []string
	for name := range r.repo.Debs {
		names = append(names, name)
	}
	return names
}

// install runs update and a download of every package, and checks every
// .deb apt got against the repository.
func (r *rig) install(c *aptenv.Client) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := c.Update(ctx); err != nil {
		r.t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	if out, err := c.Download(ctx, r.packageNames()...); err != nil {
		r.t.Fatalf("apt-get download: %v\n%s", err, out)
	}
	got, err := c.Archives()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, d := range r.repo.Debs {
		if got[d.FileName()] != d.SHA256 {
			r.t.Fatalf("apt got %s with sha256 %q, repository lists %s", d.FileName(), got[d.FileName()], d.SHA256)
		}
	}
}

func TestAptBothModesShareOneCache(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.install(r.client(false))
	debGets := r.origin.Requests(".deb")
	if debGets != len(r.repo.Debs) {
		t.Fatalf("first client: %d origin .deb GETs, want %d", debGets, len(r.repo.Debs))
	}
	// A second client, in prefix mode, is served from the same cache.
	r.install(r.client(true))
	if got := r.origin.Requests(".deb"); got != debGets {
		t.Fatalf("second client caused %d more origin .deb GETs, want 0", got-debGets)
	}
	st := r.State()
	if len(st.Repos) != 1 || !st.Repos[0].Trusted {
		t.Fatalf("status repositories = %+v, want one trusted", st.Repos)
	}
	if st.Served["cache"] == 0 {
		t.Fatalf("status shows no bytes served from cache: %+v", st.Served)
	}
}

func TestTamperedDebIsRefusedAndNotCached(t *testing.T) {
	r := newRig(t, rigOptions{})
	c := r.client(false)
	ctx := context.Background()
	if out, err := c.Update(ctx); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	victim := r.repo.Debs["bravo"]
	var tampered []byte
	r.origin.Tamper(victim.Path, func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)-10] ^= 0xff
		tampered = b
		return b
	})
	out, err := c.Download(ctx, "bravo")
	if err == nil {
		t.Fatalf("apt-get accepted a tampered .deb:\n%s", out)
	}
	bad := sha256.Sum256(tampered)
	if r.Store.HasBlob(store.Digest(bad)) {
		t.Fatal("the tampered .deb is in the cache")
	}
	if !hasFailure(r.State(), victim.Path, victim.SHA256) {
		t.Fatalf("status does not list the failure with the URL and digest: %+v", r.State().Failures)
	}
	// Fixed at the origin: the next request succeeds (nothing bad stuck).
	r.origin.Untamper(victim.Path)
	if out, err := c.Download(ctx, "bravo"); err != nil {
		t.Fatalf("after the origin was fixed: %v\n%s", err, out)
	}
}

func TestBadInReleaseSignatureKeepsOldRoot(t *testing.T) {
	r := newRig(t, rigOptions{revalidate: time.Nanosecond})
	r.install(r.client(false))
	inrel := r.origin.URL + "/" + r.repo.DistPath("InRelease")
	_, good, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.origin.Tamper(r.repo.DistPath("InRelease"), func(b []byte) []byte {
		return bytes.Replace(b, []byte("Suite: "), []byte("Suite:  "), 1)
	})
	resp, got, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(got, good) {
		t.Fatalf("after a bad signature: status %d, same bytes as the old root: %v", resp.StatusCode, bytes.Equal(got, good))
	}
	// A fresh client still updates and installs.
	r.install(r.client(true))
	if !hasFailure(r.State(), r.repo.DistPath("InRelease"), "") {
		t.Fatal("status lists no refused root")
	}
}

func TestRootNeverMovesBackwards(t *testing.T) {
	r := newRig(t, rigOptions{revalidate: time.Nanosecond})
	inrel := r.origin.URL + "/" + r.repo.DistPath("InRelease")
	_, old, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.repo.Resign(); err != nil {
		t.Fatal(err)
	}
	_, newer, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(old, newer) {
		t.Fatal("resign did not change InRelease")
	}
	// A mirror serving the older (validly signed) root is refused.
	r.origin.Tamper(r.repo.DistPath("InRelease"), func([]byte) []byte { return old })
	_, got, err := r.Get(inrel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, newer) {
		t.Fatal("proxy served an older root than the one it had accepted")
	}
	if !hasFailure(r.State(), r.repo.DistPath("InRelease"), "") {
		t.Fatal("status lists no refused root")
	}
}

func TestOfflineAfterWarmRun(t *testing.T) {
	r := newRig(t, rigOptions{revalidate: time.Nanosecond})
	r.install(r.client(false))
	r.origin.Stop()
	r.install(r.client(false))
	r.install(r.client(true))
	// An uncached file gets a clear 504.
	resp, body, err := r.Get(r.origin.URL+"/pool/main/n/nothere/nothere_1_amd64.deb", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "pkgswarm:") {
		t.Fatalf("uncached file with the origin down: %d %q, want 504 with a reason", resp.StatusCode, body)
	}
}

func TestHerdOneOriginGet(t *testing.T) {
	const clients = 50
	r := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "big", Version: "1", Size: 50 << 20, Seed: 9}}})
	c := r.client(false)
	if out, err := c.Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	big := r.repo.Debs["big"]
	u := r.origin.URL + "/" + big.Path
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := r.ProxyClient().Get(u)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil || resp.StatusCode != 200 || hex.EncodeToString(h.Sum(nil)) != big.SHA256 {
				errs <- fmt.Errorf("status %d, %d bytes, sha256 %x, err %v", resp.StatusCode, n, h.Sum(nil), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.origin.Requests(big.Path); n != 1 {
		t.Fatalf("%d clients caused %d origin GETs, want 1", clients, n)
	}
}

func TestMirrorFallbackOnTamper(t *testing.T) {
	repo := testrepo.Build(t, testrepo.Options{Packages: defaultPackages[:2]})
	primary := testrepo.Serve(t, repo.Dir)
	mirror := testrepo.Serve(t, repo.Dir)
	r := &rig{t: t, repo: repo, origin: primary}
	r.start(rigOptions{origins: []string{mirror.URL}, cfg: func(c *node.Config) {
		c.Mirrors = map[string][]string{primary.URL: {mirror.URL}}
	}})
	victim := repo.Debs["alpha"]
	primary.Tamper(victim.Path, func(b []byte) []byte { b = bytes.Clone(b); b[0] ^= 1; return b })
	r.install(r.client(false))
	if mirror.Requests(victim.Path) != 1 {
		t.Fatalf("mirror served %s %d times, want 1", victim.Path, mirror.Requests(victim.Path))
	}
}

func TestPlainIndexFromMidSyncMirror(t *testing.T) {
	r := newRig(t, rigOptions{})
	inrel := r.origin.URL + "/" + r.repo.DistPath("InRelease")
	if resp, _, err := r.Get(inrel, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("InRelease: %v %v", resp, err)
	}
	p := r.repo.DistPath("main/binary-amd64/Packages.xz")
	r.origin.Tamper(p, func(b []byte) []byte { return append(bytes.Clone(b), 0) })
	resp, body, err := r.Get(r.origin.URL+"/"+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := r.repo.Indexes["main/binary-amd64/Packages.xz"].SHA256
	sum := sha256.Sum256(body)
	if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != want {
		t.Fatalf("plain index from a mid-sync mirror: status %d sha256 %x, want the by-hash copy %s", resp.StatusCode, sum, want)
	}
}

func TestUntrustedRepositoryStillCaches(t *testing.T) {
	r := newRig(t, rigOptions{untrusted: true})
	r.install(r.client(false))
	debGets := r.origin.Requests(".deb")
	r.install(r.client(true))
	if got := r.origin.Requests(".deb"); got != debGets {
		t.Fatalf("untrusted repository: second client caused %d origin .deb GETs", got-debGets)
	}
	st := r.State()
	if len(st.Repos) != 1 || st.Repos[0].Trusted || st.Repos[0].Note == "" {
		t.Fatalf("status repositories = %+v, want one untrusted with a note", st.Repos)
	}
	// Nothing of it is offered to peers.
	d := r.repo.Debs["alpha"]
	resp, err := http.Get(r.URL + "/_pkgswarm/v1/blob/sha256/" + d.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("peer endpoint served an unverified blob: %d", resp.StatusCode)
	}
}

func TestPeerEndpointServesVerifiedBlobsWithRange(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.install(r.client(false))
	d := r.repo.Debs["charlie"]
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/_pkgswarm/v1/blob/sha256/"+d.SHA256, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	full, err := os.ReadFile(r.repo.Path(d.Path))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[100:200]) {
		t.Fatalf("range from peer endpoint: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestRefusesWhatIsNotARepository(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, u := range []string{r.origin.URL + "/index.html", "http://127.0.0.1:1/pool/x.deb"} {
		resp, body, err := r.Get(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(string(body), "pkgswarm: ") {
			t.Errorf("%s: %d %q, want 403 with a reason", u, resp.StatusCode, body)
		}
	}
}

// An https origin reached through the /https/ prefix: fetched over TLS,
// verified, cached; apt never speaks TLS itself.
func TestHTTPSOriginThroughPrefix(t *testing.T) {
	repo := testrepo.Build(t, testrepo.Options{Packages: defaultPackages[:2]})
	origin := testrepo.ServeTLS(t, repo.Dir)
	r := &rig{t: t, repo: repo, origin: origin}
	ou, _ := url.Parse(origin.URL)
	r.start(rigOptions{cfg: func(c *node.Config) {
		c.OriginTransport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: origin.CertPool()}}
	}})
	c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{{
		URL: r.URL + "/https/" + ou.Host, Keyring: repo.Key.KeyringPath, Suite: repo.Suite}}})
	r.install(c)
	before := origin.Requests(".deb")
	r.install(aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{{
		URL: r.URL + "/https/" + ou.Host, Keyring: repo.Key.KeyringPath, Suite: repo.Suite}}}))
	if origin.Requests(".deb") != before {
		t.Fatal("second client went to the https origin again")
	}
}

// Range and If-Range on a cached file: 206 with the right bytes while the
// validator matches, the whole file once it does not.
func TestRangeFromCache(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.install(r.client(false))
	d := r.repo.Debs["charlie"]
	full, err := os.ReadFile(r.repo.Path(d.Path))
	if err != nil {
		t.Fatal(err)
	}
	u := r.origin.URL + "/" + d.Path
	resp, body, err := r.Get(u, http.Header{"Range": {"bytes=1000-1999"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[1000:2000]) {
		t.Fatalf("Range: %d, %d bytes", resp.StatusCode, len(body))
	}
	etag := resp.Header.Get("ETag")
	if etag != `"sha256-`+d.SHA256+`"` {
		t.Fatalf("ETag %q does not name the digest", etag)
	}
	resp, body, _ = r.Get(u, http.Header{"Range": {"bytes=10-19"}, "If-Range": {etag}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[10:20]) {
		t.Fatalf("If-Range matching: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body, _ = r.Get(u, http.Header{"Range": {"bytes=10-19"}, "If-Range": {`"other"`}})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, full) {
		t.Fatalf("If-Range not matching: %d, %d bytes, want the whole file", resp.StatusCode, len(body))
	}
	if r.origin.Requests(d.Path) != 1 {
		t.Fatalf("range requests reached the origin: %d GETs", r.origin.Requests(d.Path))
	}
}

// echoServer starts a TCP server on loopback that sends back what it reads,
// for CONNECT tunnels, and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return echo.Addr().String()
}

// CONNECT is passed through to allowed targets only, and never cached.
func TestConnectAllowList(t *testing.T) {
	allowed := echoServer(t)
	r := newRig(t, rigOptions{cfg: func(c *node.Config) { c.ConnectAllow = []string{allowed} }})
	dial := func(target string) (net.Conn, string) {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		status, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return c, status
	}
	c, status := dial(allowed)
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("CONNECT to an allowed target: %q", status)
	}
	// The status line was read through a bufio.Reader that may hold more;
	// the echo only starts once we write.
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("tunnel echo: %q, %v", got, err)
	}
	c.Close()
	c, status = dial("127.0.0.1:1")
	c.Close()
	if !strings.Contains(status, " 403 ") {
		t.Fatalf("CONNECT to a target not on the list: %q, want 403", status)
	}
}

// The status page reports the cache's size bound as configured.
func TestStatusReportsSizeBound(t *testing.T) {
	r := newRig(t, rigOptions{maxBytes: 5 << 30})
	if got := r.State().Store.MaxBytes; got != 5<<30 {
		t.Fatalf("status max_bytes = %d, want %d", got, int64(5<<30))
	}
}

// Issue 10, item 2: a cache smaller than the working set still serves apt:
// roots and indices evicted by a large download are fetched again on a
// miss while the origin is up, and every client finishes its update and
// download (bounded in time: install gives each apt-get two minutes).
func TestCacheSmallerThanTheWorkingSet(t *testing.T) {
	pkgs := []testrepo.Package{
		{Name: "one", Version: "1", Size: 3 << 20, Seed: 51},
		{Name: "two", Version: "1", Size: 3 << 20, Seed: 52},
		{Name: "three", Version: "1", Size: 2 << 20, Seed: 53},
		{Name: "four", Version: "1", Size: 40 << 10, Seed: 54},
	}
	r := newRig(t, rigOptions{packages: pkgs, maxBytes: 4 << 20, revalidate: time.Hour})
	for i := range 3 {
		r.install(r.client(i%2 == 1))
	}
	if blobs, bytes := r.Store.Usage(); bytes > 4<<20 {
		t.Fatalf("the store holds %d bytes in %d blobs, over its 4 MiB bound", bytes, blobs)
	}
}

// hasFailure reports whether the status lists a verification failure (or
// refused root) of a URL ending in path, with digest (when not "").
func hasFailure(st status.Status, path, digest string) bool {
	for _, f := range st.Failures {
		if strings.HasSuffix(f.URL, path) && (digest == "" || f.SHA256 == digest) {
			return true
		}
	}
	return false
}

// pipelineRig starts a node over a repository of packages named prefix0…,
// of the given sizes in bytes, whose index a client has fetched through the
// node, and returns their entries in order.
func pipelineRig(t *testing.T, prefix string, sizes []int, seed int64) (*rig, []testrepo.DebInfo) {
	t.Helper()
	var pkgs []testrepo.Package
	for i, size := range sizes {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("%s%d", prefix, i), Version: "1", Size: size, Seed: seed + int64(i)})
	}
	r := newRig(t, rigOptions{packages: pkgs})
	if out, err := r.client(false).Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	var debs []testrepo.DebInfo
	for i := range sizes {
		d := r.repo.Debs[fmt.Sprintf("%s%d", prefix, i)]
		r.expects(d.Path)
		debs = append(debs, d)
	}
	return r, debs
}

// pipeline sends a GET of every deb on one connection to the node before
// reading any answer, as apt does, and returns the connection.
func pipeline(t *testing.T, r *rig, debs []testrepo.DebInfo) net.Conn {
	t.Helper()
	var reqs bytes.Buffer
	for _, d := range debs {
		fmt.Fprintf(&reqs, "GET %s/%s HTTP/1.1\r\nHost: %s\r\n\r\n", r.origin.URL, d.Path, strings.TrimPrefix(r.origin.URL, "http://"))
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

// Issue 13: requests a client pipelines (apt sends up to ten before reading
// an answer) are started as soon as they arrive, not one after the other:
// with every origin answer delayed, the node runs the five downloads at
// once, then answers them in order.
func TestPipelinedRequestsStartAhead(t *testing.T) {
	r, debs := pipelineRig(t, "p", []int{30 << 10, 30 << 10, 30 << 10, 30 << 10, 30 << 10}, 60)
	for _, d := range debs {
		r.origin.SetDelay(d.Path, 2*time.Second)
	}
	c := pipeline(t, r, debs)
	if !noderig.Eventually(func() bool { return len(r.Fetch.Transfers()) == 5 }) {
		t.Fatalf("%d downloads ran at once for 5 pipelined requests, want 5", len(r.Fetch.Transfers()))
	}
	for i, resp := range answers(t, c, len(debs)) {
		d := debs[i]
		if sum := sha256.Sum256(body(resp)); resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != d.SHA256 {
			t.Fatalf("%s: %d, sha256 %x", d.Path, resp.StatusCode, sum)
		}
	}
}

// A client's requests queued behind a large file it asked for first go to
// the origin behind that file on its connection, in the client's order, as
// the client's own pipeline would have sent them: fetched on a connection
// of their own they would only be done early (the client reads the large
// file's answer first), and the node's link would then idle for a round
// trip at the large file's end while the client sends its next requests.
func TestPipelineBehindALargeFileStaysOnItsConnection(t *testing.T) {
	r, debs := pipelineRig(t, "l", []int{8 << 20, 20 << 10, 20 << 10, 20 << 10}, 80)
	// The large file takes half a second, so the requests behind it reach
	// the node's origin pool while most of it is still to come.
	r.origin.Throttle(debs[0].Path, 16<<20)
	c := pipeline(t, r, debs)
	for i, resp := range answers(t, c, len(debs)) {
		if n := len(body(resp)); resp.StatusCode != 200 || int64(n) != debs[i].Size {
			t.Fatalf("%s: %d, %d bytes", debs[i].Path, resp.StatusCode, n)
		}
	}
	remote := map[string]string{}
	for _, e := range r.origin.Log() {
		remote[e.Path] = e.Remote
	}
	for _, d := range debs[1:] {
		if got, want := remote["/"+d.Path], remote["/"+debs[0].Path]; got != want {
			t.Errorf("%s went to the origin from %s, not behind the large file on %s", d.Path, got, want)
		}
	}
}

// A file fetched ahead for a pipelined request is reported as the origin's
// when its turn comes, not as a cache hit: it finished while the request
// before it was still waiting, but this client caused the origin transfer
// (X-Pkgswarm-Source, and the served-bytes count by source, say so).
func TestFetchedAheadIsNotACacheHit(t *testing.T) {
	r, debs := pipelineRig(t, "q", []int{20 << 10, 20 << 10, 20 << 10}, 70)
	// The first answer is slow, so the two behind it finish first.
	r.origin.SetDelay(debs[0].Path, time.Second)
	served := settledServed(t, r, "origin")
	c := pipeline(t, r, debs)
	var total int64
	for i, resp := range answers(t, c, len(debs)) {
		d := debs[i]
		if n := len(body(resp)); resp.StatusCode != 200 || int64(n) != d.Size {
			t.Fatalf("%s: %d, %d bytes", d.Path, resp.StatusCode, n)
		}
		total += d.Size
		if src := resp.Header.Get("X-Pkgswarm-Source"); !strings.HasPrefix(src, "origin") {
			t.Errorf("%s, fetched from the origin for this client: X-Pkgswarm-Source %q, want origin", d.Path, src)
		}
	}
	if got := settledServed(t, r, "origin") - served; got != total {
		t.Errorf("served from the origin: %d bytes, want %d (the three files)", got, total)
	}
}

// settledServed returns the bytes the node reports served from source once
// the count stops moving: a request is counted when its handler returns,
// which can be after its client read the last byte.
func settledServed(t *testing.T, r *rig, source string) int64 {
	t.Helper()
	last := r.State().Served[source]
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n := r.State().Served[source]
		if n == last {
			return n
		}
		last = n
	}
	t.Fatalf("the count of bytes served from %s kept moving for 10 s", source)
	return 0
}
