package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

func TestPieceLength(t *testing.T) {
	cases := []struct {
		size int64
		want int64
	}{
		{1, 256 << 10},
		{64 << 20, 256 << 10},
		{64<<20 + 1, 1 << 20},
		{1 << 30, 1 << 20},
		{1<<30 + 1, 4 << 20},
		{20 << 30, 4 << 20},
	}
	for _, c := range cases {
		t.Run(strconv.FormatInt(c.size, 10), func(t *testing.T) {
			if got := PieceLength(c.size); got != c.want {
				t.Errorf("PieceLength(%d) = %d, want %d", c.size, got, c.want)
			}
		})
	}
}

// The info dict is exactly the four BEP 3 keys, so any implementation that
// follows the table derives the same infohash.
func TestCanonicalInfoBytes(t *testing.T) {
	data := []byte("hello pkgswarm")
	digest := digestOf(data)
	info, err := buildInfo(bytes.NewReader(data), digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(data)
	want := "d6:lengthi14e4:name64:" + digest + "12:piece lengthi262144e6:pieces20:" + string(h[:]) + "e"
	if string(info) != want {
		t.Fatalf("info bytes\n got %q\nwant %q", info, want)
	}
	ih, err := checkInfo(info, digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if ih != metainfo.HashBytes([]byte(want)) {
		t.Errorf("infohash %s is not the SHA-1 of the info bytes", ih.HexString())
	}
}

func TestBuildInfoErrors(t *testing.T) {
	data := randomBytes(1000, 4)
	digest := digestOf(data)
	cases := []struct {
		name   string
		digest string
		size   int64
		want   string
	}{
		{"upper-case digest", strings.ToUpper(digest), 1000, "not a lower-case hex"},
		{"zero size", digest, 0, "not positive"},
		{"blob shorter than size", digest, 2000, "shorter than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildInfo(bytes.NewReader(data), c.digest, c.size)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("buildInfo: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestPeerStoreKeysByIPPort(t *testing.T) {
	s := newPeerStore()
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	var ih metainfo.Hash
	ih[0] = 1
	a := krpc.NodeAddr{IP: []byte{10, 0, 0, 1}, Port: 6881}
	b := krpc.NodeAddr{IP: []byte{10, 0, 0, 1}, Port: 6882}
	s.AddPeer(ih, a)
	s.AddPeer(ih, b)
	s.AddPeer(ih, a)
	got := s.GetPeers(ih)
	if len(got) != 2 {
		t.Fatalf("GetPeers = %v, want two entries (one per port)", got)
	}
	for _, p := range got {
		if p.IP.String() != "10.0.0.1" || (p.Port != 6881 && p.Port != 6882) {
			t.Errorf("corrupt address %v", p)
		}
	}
	now = now.Add(3 * time.Hour)
	if got := s.GetPeers(ih); len(got) != 0 {
		t.Errorf("expired entries returned: %v", got)
	}
	s.addLocal(ih, netip.MustParseAddrPort("10.0.0.9:1"))
	if got := s.GetPeers(ih); len(got) != 1 || got[0].String() != "10.0.0.9:1" {
		t.Errorf("local entry: %v", got)
	}
	s.AddPeer(ih, krpc.NodeAddr{IP: []byte{1, 2, 3}, Port: 1})
	s.AddPeer(ih, krpc.NodeAddr{IP: []byte{1, 2, 3, 4}, Port: 0})
	if got := s.GetPeers(ih); len(got) != 1 {
		t.Errorf("malformed announces were stored: %v", got)
	}
}

func TestPeerStorePerKeyCap(t *testing.T) {
	s := newPeerStore()
	s.perKey = 3
	now := time.Unix(1000, 0)
	s.now = func() time.Time { now = now.Add(time.Second); return now }
	var ih metainfo.Hash
	for i := 1; i <= 5; i++ {
		s.AddPeer(ih, krpc.NodeAddr{IP: []byte{10, 0, 0, byte(i)}, Port: 1})
	}
	got := s.GetPeers(ih)
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	for _, p := range got {
		if p.IP[3] < 3 {
			t.Errorf("oldest entry %v kept", p)
		}
	}
}

func TestBanList(t *testing.T) {
	b := newBanList()
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	ip := netip.MustParseAddr("10.1.2.3")
	b.ban(ip, now.Add(time.Minute), "test")
	if _, ok := b.Lookup(ip.AsSlice()); !ok {
		t.Error("banned IP not blocked")
	}
	if _, ok := b.Lookup(netip.MustParseAddr("::ffff:10.1.2.3").AsSlice()); !ok {
		t.Error("banned IP not blocked in its v4-in-v6 form")
	}
	if _, ok := b.Lookup(netip.MustParseAddr("10.1.2.4").AsSlice()); ok {
		t.Error("other IP blocked")
	}
	now = now.Add(2 * time.Minute)
	if _, ok := b.Lookup(ip.AsSlice()); ok {
		t.Error("expired ban still blocks")
	}
}

// Seed is idempotent, hashes a blob once (the info cache survives a
// restart), drops the least recently seeded beyond MaxSeeded, and the
// Handler serves only seeded blobs.
func TestSeedCacheCapAndHandler(t *testing.T) {
	blobs := newDirBlobs(t)
	var digests []string
	for i := 0; i < 3; i++ {
		digests = append(digests, blobs.put(t, randomBytes(300<<10, uint64(100+i)), ""))
	}
	const size = 300 << 10
	dir := t.TempDir()
	n := newNodeDir(t, dir, blobs, func(c *Config) { c.MaxSeeded = 2 })
	for _, d := range digests[:2] {
		if err := n.Seed(d, size); err != nil {
			t.Fatal(err)
		}
	}
	opens := blobs.opens.Load()
	if err := n.Seed(digests[0], size); err != nil {
		t.Fatal(err)
	}
	if got := blobs.opens.Load(); got != opens {
		t.Errorf("re-seeding opened the blob again (%d → %d opens)", opens, got)
	}
	// digests[0] was re-seeded last, so digests[1] is the one to go.
	if err := n.Seed(digests[2], size); err != nil {
		t.Fatal(err)
	}
	if got := n.Stats().Seeded; got != 2 {
		t.Errorf("%d seeded with MaxSeeded 2", got)
	}
	if _, err := n.Magnet(digests[1], size); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Magnet of the evicted blob: %v, want fs.ErrNotExist", err)
	}
	m, err := n.Magnet(digests[0], size)
	if err != nil {
		t.Fatal(err)
	}
	mag, err := metainfo.ParseMagnetUri(m)
	if err != nil {
		t.Fatal(err)
	}
	if mag.DisplayName != digests[0] || mag.Params.Get("xl") != "307200" || mag.Params.Get("x.pe") != n.PeerAddr() {
		t.Errorf("magnet %s lacks dn/xl/x.pe", m)
	}

	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	for _, c := range []struct {
		name, path string
		status     int
	}{
		{"seeded", HandlerPath + "sha256/" + digests[0], 200},
		{"evicted", HandlerPath + "sha256/" + digests[1], 404},
		{"bad digest", HandlerPath + "sha256/XYZ", 404},
		{"other algorithm", HandlerPath + "md5/" + digests[0], 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, body)
			}
			if c.status != 200 {
				return
			}
			info, ih, err := ParseTorrentFile(body, digests[0], size)
			if err != nil {
				t.Fatal(err)
			}
			if mag.InfoHash != ih {
				t.Errorf("served infohash %s, magnet says %s", ih.HexString(), mag.InfoHash.HexString())
			}
			var i metainfo.Info
			if err := bencode.Unmarshal(info, &i); err != nil || i.Name != digests[0] {
				t.Errorf("served info %v, %v", i.Name, err)
			}
			if resp.Header.Get(peerPortHeader) == "" {
				t.Error("no peer port header")
			}
		})
	}
	resp, err := http.Post(srv.URL+HandlerPath+"sha256/"+digests[0], "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}

	// A restarted node reuses the cached info: no blob read to seed.
	n.Close()
	n2 := newNodeDir(t, dir, blobs)
	opens = blobs.opens.Load()
	if err := n2.Seed(digests[0], size); err != nil {
		t.Fatal(err)
	}
	if got := blobs.opens.Load(); got != opens {
		t.Errorf("seeding after a restart read the blob (%d → %d opens)", opens, got)
	}
	m2, _ := n2.Magnet(digests[0], size)
	if mag2, _ := metainfo.ParseMagnetUri(m2); mag2.InfoHash != mag.InfoHash {
		t.Error("infohash changed across a restart")
	}
}

func TestSeedMissingBlob(t *testing.T) {
	n := newNode(t, newDirBlobs(t))
	err := n.Seed(digestOf([]byte("absent")), 5<<20)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Seed of an absent blob: %v, want fs.ErrNotExist", err)
	}
	if n.Stats().Seeded != 0 {
		t.Error("absent blob counted as seeded")
	}
}

// Fetching a blob this node seeds reads the local file.
func TestFetchSeededIsLocal(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(400<<10, 5)
	digest := blobs.put(t, data, "")
	n := newNode(t, blobs)
	if err := n.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := fetchAll(context.Background(), n, digest, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("local fetch: %v", err)
	}
}

// Ban blocks a node: a downloader that banned the only holder finds nothing.
func TestBanBlocksHolder(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(1<<20, 6)
	digest := blobs.put(t, data, "")
	a := newNode(t, blobs)
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	b.Ban(a.PeerAddr(), time.Hour)
	if _, err := b.Fetch(context.Background(), digest, int64(len(data)), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch from a banned holder: %v, want ErrNotFound", err)
	}
	b.Ban(a.PeerAddr(), 0)
	got, err := fetchAll(context.Background(), b, digest, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch after lifting the ban: %v", err)
	}
}

// Peer hints find a holder that no DHT path leads to.
func TestPeerHints(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(1<<20, 7)
	digest := blobs.put(t, data, "")
	a := newNode(t, blobs)
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b := newNode(t, newDirBlobs(t)) // no bootstrap at all
	b.AddPeerHints(digest, a.MetainfoAddr())
	got, err := fetchAll(context.Background(), b, digest, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch by hint: %v", err)
	}
}

// Nodes of different namespaces do not meet by digest.
func TestNamespaceSeparates(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(1<<20, 8)
	digest := blobs.put(t, data, "")
	a := newNode(t, blobs, func(c *Config) { c.Namespace = "office-a/v1" })
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	if _, err := b.Fetch(context.Background(), digest, int64(len(data)), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch across namespaces: %v, want ErrNotFound", err)
	}
	c := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()), func(c *Config) { c.Namespace = "office-a/v1" })
	got, err := fetchAll(context.Background(), c, digest, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch within the namespace: %v", err)
	}
}
