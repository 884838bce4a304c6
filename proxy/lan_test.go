package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
)

// staticPeers is a PeerSet with a fixed list that records bans.
type staticPeers struct {
	mu    sync.Mutex
	peers []lan.Peer
	bans  map[string]string
}

func (s *staticPeers) Peers() []lan.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []lan.Peer
	for _, p := range s.peers {
		if _, banned := s.bans[p.ID]; !banned {
			out = append(out, p)
		}
	}
	return out
}

func (s *staticPeers) Ban(id string, until time.Time, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bans == nil {
		s.bans = map[string]string{}
	}
	s.bans[id] = reason
}

func (s *staticPeers) banned(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bans[id]
}

func (s *staticPeers) set(p ...lan.Peer) {
	s.mu.Lock()
	s.peers = p
	s.mu.Unlock()
}

// node starts another node in front of r's origin, asking peers first.
func (r *rig) node(id string, peers lan.PeerSet) *rig {
	n := &rig{t: r.t, repo: r.repo, origin: r.origin}
	n.start(rigOptions{cfg: func(c *node.Config) {
		c.NodeID = id
		if peers != nil {
			c.Site = []fetch.Source{&lan.Source{Peers: peers, NodeID: id}}
		}
	}})
	return n
}

// expects waits until n's trust resolver gives a digest for the origin path
// p (an index parse finishes in the background after its file is served).
func (n *rig) expects(p string) {
	n.t.Helper()
	tg, err := target.Parse(n.origin.URL + "/" + p)
	if err != nil {
		n.t.Fatal(err)
	}
	if !noderig.Eventually(func() bool {
		plan, err := n.Trust.Resolve(context.Background(), tg)
		return err == nil && plan.Request != nil && plan.Request.Expect != nil
	}) {
		n.t.Fatalf("no verified index lists %s", p)
	}
}

func TestLANPeerServesSecondNode(t *testing.T) {
	a := newRig(t, rigOptions{})
	b := a.node("b", &staticPeers{peers: []lan.Peer{{ID: "a", URL: a.URL}}})
	a.install(a.client(false))
	before := a.origin.Requests(".deb")
	b.install(b.client(false))
	if got := a.origin.Requests(".deb"); got != before {
		t.Fatalf("second node made %d origin .deb GETs, want 0 (all from its LAN peer)", got-before)
	}
	st := b.State()
	if st.Served["lan"] == 0 {
		t.Fatalf("node b status shows no bytes from lan: %+v", st.Served)
	}
}

// evilPeer claims to hold every blob and serves corrupted bytes of the
// real file (so only the digest check can catch it).
func evilPeer(t *testing.T, repo *testrepo.Repo) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := strings.TrimPrefix(r.URL.Path, "/_pkgswarm/v1/blob/sha256/")
		for _, d := range repo.Debs {
			if d.SHA256 != want {
				continue
			}
			b, err := os.ReadFile(repo.Path(d.Path))
			if err != nil {
				t.Error(err)
			}
			b[len(b)/2] ^= 0x55
			w.Header().Set("X-Pkgswarm-State", "complete")
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLANCorruptPeerIsBanned(t *testing.T) {
	a := newRig(t, rigOptions{})
	evil := evilPeer(t, a.repo)
	peers := &staticPeers{peers: []lan.Peer{{ID: "evil", URL: evil.URL}}}
	b := a.node("b", peers)
	b.install(b.client(false))
	peers.mu.Lock()
	reason := peers.bans["evil"]
	peers.mu.Unlock()
	if reason == "" {
		t.Fatal("the peer that sent corrupted bytes was not banned")
	}
	for _, d := range a.repo.Debs {
		b2, _ := os.ReadFile(a.repo.Path(d.Path))
		b2[len(b2)/2] ^= 0x55
		if b.Store.HasBlob(store.Digest(sha256.Sum256(b2))) {
			t.Fatalf("corrupted copy of %s is in the cache", d.Path)
		}
	}
	if st := b.State(); len(st.Failures) == 0 || !strings.Contains(st.Failures[0].Sources, "lan") {
		t.Fatalf("status does not show a LAN verification failure: %+v", st.Failures)
	}
}

// cutPeer serves the first half of a file, then drops the connection.
func TestLANPeerDiesMidTransfer(t *testing.T) {
	a := newRig(t, rigOptions{})
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := strings.TrimPrefix(r.URL.Path, "/_pkgswarm/v1/blob/sha256/")
		for _, d := range a.repo.Debs {
			if d.SHA256 != want {
				continue
			}
			w.Header().Set("X-Pkgswarm-State", "complete")
			w.Header().Set("Content-Length", fmt.Sprint(d.Size))
			if r.Method == http.MethodHead {
				return
			}
			b, _ := os.ReadFile(a.repo.Path(d.Path))
			w.Write(b[:len(b)/2])
			panic(http.ErrAbortHandler)
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(cut.Close)
	b := a.node("b", &staticPeers{peers: []lan.Peer{{ID: "cut", URL: cut.URL}}})
	b.install(b.client(false))
	// The origin was asked only for the missing halves (Range).
	ranged := 0
	for _, req := range a.origin.Log() {
		if strings.HasSuffix(req.Path, ".deb") && req.Range != "" {
			ranged++
		}
	}
	if ranged == 0 {
		t.Fatal("the download did not resume from the origin with a Range request")
	}
}

// Two nodes asked for the same uncached file at the same moment: one goes
// to the origin, the other streams from it.
func TestLANSimultaneousMissOneOriginGet(t *testing.T) {
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "big", Version: "1", Size: 16 << 20, Seed: 5}}})
	pa, pb := &staticPeers{}, &staticPeers{}
	na := a.node("a", pa)
	nb := a.node("b", pb)
	pa.set(lan.Peer{ID: "b", URL: nb.URL})
	pb.set(lan.Peer{ID: "a", URL: na.URL})
	for _, n := range []*rig{na, nb} {
		resp, _, err := n.Get(a.origin.URL+"/"+a.repo.DistPath("InRelease"), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("InRelease: %v", err)
		}
		resp, _, err = n.Get(a.origin.URL+"/"+a.repo.DistPath("main/binary-amd64/Packages.xz"), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("Packages: %v", err)
		}
	}
	big := a.repo.Debs["big"]
	na.expects(big.Path)
	nb.expects(big.Path)
	a.origin.Throttle(".deb", 32<<20) // 0.5 s: both requests overlap
	getAtOnce(t, []*rig{na, nb}, a.origin.URL+"/"+big.Path, big.SHA256)
	if n := a.origin.Requests(big.Path); n != 1 {
		t.Fatalf("two nodes missing at once made %d origin GETs, want 1", n)
	}
}

// urpmi rpms are known by name and size only; a second node gets them from
// its LAN peer by name key, and checks their signatures itself.
func TestLANServesRPMsByNameKey(t *testing.T) {
	a := newRPMRig(t, rpmrepo.Options{}, nil)
	first := a.urpmi(false)
	first.addMedia()
	var paths []string
	for _, m := range a.tree.Media {
		for _, p := range m.Packages {
			paths = append(paths, p.URLPath)
		}
	}
	first.mustCurl(false, paths...)
	before := a.origin.Requests(".rpm")

	b := &rpmRig{t: t, tree: a.tree, opts: a.opts, origin: a.origin, dir: t.TempDir()}
	b.start(func(c *node.Config) {
		c.NodeID = "b"
		c.Site = []fetch.Source{&lan.Source{NodeID: "b",
			Peers: &staticPeers{peers: []lan.Peer{{ID: "a", URL: a.URL}}}}}
	})
	second := b.urpmi(false)
	second.addMedia()
	second.mustCurl(false, paths...)
	second.checkRPMs(a.tree)
	if got := a.origin.Requests(".rpm"); got != before {
		t.Fatalf("second node made %d origin rpm GETs, want 0 (all from its LAN peer)", got-before)
	}
}

// A peer that answers and then sends nothing is cut after the stall
// timeout; the origin resumes the download.
func TestLANStalledPeerIsCut(t *testing.T) {
	a := newRig(t, rigOptions{packages: defaultPackages[:1]})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pkgswarm-State", "complete")
		if r.Method == http.MethodHead {
			return
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	peers := &staticPeers{peers: []lan.Peer{{ID: "hang", URL: hang.URL}}}
	b := &rig{t: t, repo: a.repo, origin: a.origin}
	b.start(rigOptions{cfg: func(c *node.Config) {
		c.NodeID = "b"
		c.StallTimeout = 300 * time.Millisecond
		c.Site = []fetch.Source{&lan.Source{NodeID: "b", Peers: peers}}
	}})
	b.install(b.client(false))
	if reason := peers.banned("hang"); !strings.Contains(reason, fetch.ErrStalled.Error()) {
		t.Fatalf("the stalled peer: ban reason %q, want one saying it stalled", reason)
	}
}

// Three nodes missing a large file at once: one origin GET, and the
// others read it by ranges from the downloads in flight (the newest bytes
// are served to one waiting peer per download, so the third reads from a
// relay or waits its turn); every node gets the right bytes.
func TestLANThreeNodesMultiSource(t *testing.T) {
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "big", Version: "1", Size: 24 << 20, Seed: 6}}})
	ps := []*staticPeers{{}, {}, {}}
	ids := []string{"a", "b", "c"}
	var nodes []*rig
	for i, id := range ids {
		nodes = append(nodes, a.node(id, ps[i]))
	}
	for i := range nodes {
		var others []lan.Peer
		for j, n := range nodes {
			if j != i {
				others = append(others, lan.Peer{ID: ids[j], URL: n.URL})
			}
		}
		ps[i].set(others...)
	}
	for _, n := range nodes {
		for _, p := range []string{a.repo.DistPath("InRelease"), a.repo.DistPath("main/binary-amd64/Packages.xz")} {
			resp, _, err := n.Get(a.origin.URL+"/"+p, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
	big := a.repo.Debs["big"]
	for _, n := range nodes {
		n.expects(big.Path)
	}
	a.origin.Throttle(".deb", 16<<20) // 1.5 s for the file: the reads overlap
	getAtOnce(t, nodes, a.origin.URL+"/"+big.Path, big.SHA256)
	if n := a.origin.Requests(big.Path); n != 1 {
		t.Fatalf("three nodes missing at once made %d origin GETs, want 1", n)
	}
	for i, p := range ps {
		for _, id := range ids {
			if why := p.banned(id); why != "" {
				t.Errorf("node %s banned %s: %s", ids[i], id, why)
			}
		}
	}
}

// getAtOnce fetches u through every node at once and checks that each got
// the bytes of digest want.
func getAtOnce(t *testing.T, nodes []*rig, u, want string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			resp, err := n.ProxyClient().Get(u)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			io.Copy(h, resp.Body)
			if hex.EncodeToString(h.Sum(nil)) != want {
				t.Errorf("node got sha256 %x, want %s", h.Sum(nil), want)
			}
		})
	}
	wg.Wait()
}

// countingTransport counts the body bytes of answers by the host that
// sent them: what each peer served to the nodes using it.
type countingTransport struct {
	http.RoundTripper
	c *byteCounts
}

type byteCounts struct {
	mu  sync.Mutex
	got map[string]int64 // by host:port
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.RoundTripper.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, c: c.c, host: req.URL.Host}
	}
	return resp, err
}

func (c *byteCounts) add(host string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got[host] += n
}

type countingBody struct {
	io.ReadCloser
	c    *byteCounts
	host string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.add(b.host, int64(n))
	return n, err
}

// Many nodes missing one large file at once read it from each other by
// ranges; the node that fetches it from the origin, and every other, sends
// about one copy, not one to every node (issue 14: the office benchmark's
// busiest node sent 2.6× the mean). Each node dials from an address of its
// own, so that a node's frontier place is kept for the peer that held it.
func TestLANManyNodesSpreadUpload(t *testing.T) {
	const n = 8
	a := newRig(t, rigOptions{packages: []testrepo.Package{{Name: "big", Version: "1", Size: 32 << 20, Seed: 7}}})
	count := &byteCounts{got: map[string]int64{}}
	ps := make([]*staticPeers, n)
	var nodes []*rig
	for i := range n {
		ps[i] = &staticPeers{}
		id := fmt.Sprintf("n%d", i)
		dial := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+2))}}
		client := &http.Client{Transport: &countingTransport{RoundTripper: &http.Transport{Proxy: nil, DialContext: dial.DialContext, DisableCompression: true}, c: count}}
		n := &rig{t: t, repo: a.repo, origin: a.origin}
		n.start(rigOptions{cfg: func(c *node.Config) {
			c.NodeID = id
			c.Site = []fetch.Source{&lan.Source{Peers: ps[i], NodeID: id, Client: client}}
		}})
		nodes = append(nodes, n)
	}
	for i := range nodes {
		var others []lan.Peer
		for j, m := range nodes {
			if j != i {
				others = append(others, lan.Peer{ID: fmt.Sprintf("n%d", j), URL: m.URL})
			}
		}
		ps[i].set(others...)
	}
	for _, nd := range nodes {
		for _, p := range []string{a.repo.DistPath("InRelease"), a.repo.DistPath("main/binary-amd64/Packages.xz")} {
			resp, _, err := nd.Get(a.origin.URL+"/"+p, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
	big := a.repo.Debs["big"]
	for _, nd := range nodes {
		nd.expects(big.Path)
	}
	a.origin.Throttle(".deb", 4<<20)
	// The nodes ask within a second of each other, in an order unrelated
	// to their ids, as apt-get runs on an office's machines do.
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			time.Sleep(time.Duration((i*7)%n) * 150 * time.Millisecond)
			getAtOnce(t, []*rig{nd}, a.origin.URL+"/"+big.Path, big.SHA256)
		})
	}
	wg.Wait()
	if got := a.origin.Requests(big.Path); got != 1 {
		t.Errorf("%d nodes missing at once made %d origin GETs, want 1", n, got)
	}
	count.mu.Lock()
	defer count.mu.Unlock()
	var total, most int64
	for i, nd := range nodes {
		u, _ := url.Parse(nd.URL)
		sent := count.got[u.Host]
		t.Logf("node n%d sent %.1f MB", i, float64(sent)/1e6)
		total += sent
		most = max(most, sent)
	}
	mean := float64(total) / n
	t.Logf("mean %.1f MB, most %.1f MB (%.2f× the mean)", mean/1e6, float64(most)/1e6, float64(most)/mean)
	if float64(most) > 2*mean {
		t.Errorf("the busiest node sent %.1f MB, more than twice the mean (%.1f MB)", float64(most)/1e6, mean/1e6)
	}
}

// A peer's GET that reaches a node as its download of the file ends gets
// the file. The download marks its blob shareable before it leaves the
// node's table of downloads; the node looked at the shareable blobs first
// and at the table second, so a download that ended between the two looks
// answered 404 (now the table comes first), and the asking peer banned an honest node for ten minutes
// ("announced … and then failed to serve it", seen at the end of the
// many-sites benchmark).
func TestPeerGetAsTheDownloadEnds(t *testing.T) {
	a := newRig(t, rigOptions{})
	if out, err := a.client(false).Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	deb := a.repo.Debs["charlie"]
	a.expects(deb.Path)
	d, err := store.ParseDigest(deb.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	key := fetch.DigestKey(d)
	a.origin.SetFault(deb.Path, testrepo.Fault{HoldEnd: 300 * time.Millisecond})
	client := make(chan error, 1)
	go func() {
		resp, _, err := a.Get(a.origin.URL+"/"+deb.Path, nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		client <- err
	}()
	if !noderig.Eventually(func() bool { return a.Fetch.Flight(key) != nil }) {
		t.Fatal("the client's download never started")
	}
	restore := proxy.SetPeerLookupHook(func() {
		// The download ends, and leaves the table, before the node looks there.
		if !noderig.Eventually(func() bool { return a.Fetch.Flight(key) == nil }) {
			t.Error("the download did not end")
		}
	})
	defer restore()
	resp, err := http.Get(a.URL + "/_pkgswarm/v1/blob/sha256/" + deb.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(got, a.deb("charlie")) {
		t.Fatalf("peer GET as the download ended: %s, %d bytes (%v); want 200 and the file", resp.Status, len(got), err)
	}
	if err := <-client; err != nil {
		t.Fatalf("the client's download: %v", err)
	}
}
