package swarm

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

// liarServer serves body as the metainfo of every blob, from its own
// loopback IP, and returns its address.
func liarServer(t *testing.T, body []byte, peerPort int) string {
	t.Helper()
	ln, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(peerPortHeader, strconv.Itoa(peerPort))
		w.Write(body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func bannedIPs(n *Node) []string {
	var ips []string
	for _, b := range n.Stats().Banned {
		ips = append(ips, b.Addr)
	}
	return ips
}

func mustBencode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bencode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Holders whose metainfo is not the canonical one for the digest are
// rejected and banned; the blob still arrives from the honest holder.
func TestPoisonedMetainfoRejected(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(3<<20, 10)
	digest := blobs.put(t, data, "")
	size := int64(len(data))
	honest := newNode(t, blobs)
	if err := honest.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	goodInfo, err := buildInfo(bytes.NewReader(data), digest, size)
	if err != nil {
		t.Fatal(err)
	}
	var good metainfo.Info
	if err := bencode.Unmarshal(goodInfo, &good); err != nil {
		t.Fatal(err)
	}
	torrentOf := func(info any) []byte {
		return mustBencode(t, map[string]any{"info": bencode.Bytes(mustBencode(t, info))})
	}
	yes := true
	otherDigest := digestOf([]byte("something else"))
	cases := []struct {
		name string
		body []byte
	}{
		{"wrong name", torrentOf(metainfo.Info{Name: otherDigest, Length: size, PieceLength: good.PieceLength, Pieces: good.Pieces})},
		{"wrong length", torrentOf(metainfo.Info{Name: digest, Length: size + 1, PieceLength: good.PieceLength, Pieces: good.Pieces})},
		{"wrong piece length", torrentOf(metainfo.Info{Name: digest, Length: size, PieceLength: 1 << 20, Pieces: good.Pieces[:3*sha1.Size]})},
		{"private flag", torrentOf(metainfo.Info{Name: digest, Length: size, PieceLength: good.PieceLength, Pieces: good.Pieces, Private: &yes})},
		{"extra key", torrentOf(metainfo.Info{Name: digest, Length: size, PieceLength: good.PieceLength, Pieces: good.Pieces, Source: "me"})},
		{"multi-file", torrentOf(metainfo.Info{Name: digest, PieceLength: good.PieceLength, Pieces: good.Pieces, Files: []metainfo.FileInfo{{Length: size, Path: []string{"x"}}}})},
		{"short pieces", torrentOf(metainfo.Info{Name: digest, Length: size, PieceLength: good.PieceLength, Pieces: good.Pieces[:sha1.Size]})},
		{"not bencode", []byte("<html>hello</html>")},
		{"no info", mustBencode(t, map[string]any{"announce": "http://tracker.invalid/"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			liar := liarServer(t, tc.body, 1)
			d := newNode(t, newDirBlobs(t), withBootstrap(honest.DHTAddr()))
			d.AddPeerHints(digest, liar)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := fetchAll(ctx, d, digest, size)
			if err != nil {
				t.Fatal(err)
			}
			if digestOf(got) != digest {
				t.Fatal("wrong bytes")
			}
			liarIP := peerHost(liar).String()
			if !slices.Contains(bannedIPs(d), liarIP) {
				t.Errorf("liar %s not banned; bans: %+v", liarIP, d.Stats().Banned)
			}
		})
	}
}

// A liar found through the DHT (it announced the rendezvous key like a
// holder) is banned the same way.
func TestPoisonedMetainfoFromDHT(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(2<<20, 11)
	digest := blobs.put(t, data, "")
	size := int64(len(data))
	honest := newNode(t, blobs)
	if err := honest.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	bad := mustBencode(t, map[string]any{"info": bencode.Bytes(mustBencode(t, metainfo.Info{
		Name: digest, Length: size + 5, PieceLength: PieceLength(size + 5), Pieces: make([]byte, 20*numPieces(size+5)),
	}))})
	liarHTTP := liarServer(t, bad, 1)
	liarIP := peerHost(liarHTTP)

	// The liar's DHT node announces K with its HTTP port to the honest node.
	pc, err := net.ListenPacket("udp", net.JoinHostPort(liarIP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	hua, _ := net.ResolveUDPAddr("udp", honest.DHTAddr())
	ls, err := dht.NewServer(&dht.ServerConfig{
		Conn:          pc,
		NoSecurity:    true,
		StartingNodes: func() ([]dht.Addr, error) { return []dht.Addr{dht.NewAddr(hua)}, nil },
		SendLimiter:   rate.NewLimiter(100, 100),
		WaitToReply:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	_, liarPort, _ := net.SplitHostPort(liarHTTP)
	port, _ := strconv.Atoi(liarPort)
	ann, err := ls.AnnounceTraversal(RendezvousKey(DefaultNamespace, digest), dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: port}))
	if err != nil {
		t.Fatal(err)
	}
	for range ann.Peers {
	}
	if ann.TraversalStats().NumResponses == 0 {
		t.Fatal("the liar's announce reached nobody")
	}

	d := newNode(t, newDirBlobs(t), withBootstrap(honest.DHTAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := fetchAll(ctx, d, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(got) != digest {
		t.Fatal("wrong bytes")
	}
	if !slices.Contains(bannedIPs(d), liarIP.String()) {
		t.Errorf("liar %s found through the DHT was not banned; bans: %+v", liarIP, d.Stats().Banned)
	}
}

// placeInfo pre-fills a node's info cache, as a previous run would have.
func placeInfo(t *testing.T, dataDir, digest string, info []byte) {
	t.Helper()
	p := filepath.Join(dataDir, "info", digest[:2], digest+".info")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, info, 0o600); err != nil {
		t.Fatal(err)
	}
}

func corrupt(data []byte) []byte {
	bad := bytes.Clone(data)
	for i := 100; i < len(bad); i += 8 << 10 {
		bad[i] ^= 0xff
	}
	return bad
}

// A holder whose metainfo is well formed but describes other bytes (its piece
// hashes match its own corrupt copy) makes the download fail at the end
// instead of delivering wrong bytes; it is banned, and the retry succeeds
// from an honest holder.
func TestMetainfoForOtherData(t *testing.T) {
	data := randomBytes(2<<20, 12)
	digest := digestOf(data)
	size := int64(len(data))
	bad := corrupt(data)

	liarBlobs := newDirBlobs(t)
	liarBlobs.put(t, bad, digest)
	liarDir := t.TempDir()
	badInfo, err := buildInfo(bytes.NewReader(bad), digest, size)
	if err != nil {
		t.Fatal(err)
	}
	placeInfo(t, liarDir, digest, badInfo)
	liar := newNodeDir(t, liarDir, liarBlobs)
	if err := liar.Seed(digest, size); err != nil {
		t.Fatal(err)
	}

	honestBlobs := newDirBlobs(t)
	honestBlobs.put(t, data, "")
	honest := newNode(t, honestBlobs)
	if err := honest.Seed(digest, size); err != nil {
		t.Fatal(err)
	}

	d := newNode(t, newDirBlobs(t), withBootstrap(liar.DHTAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = fetchAll(ctx, d, digest, size)
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch from the liar alone: %v, want a digest mismatch", err)
	}
	t.Logf("first fetch: %v", err)
	liarIP := peerHost(liar.PeerAddr()).String()
	if !slices.Contains(bannedIPs(d), liarIP) {
		t.Fatalf("liar %s not banned; bans: %+v", liarIP, d.Stats().Banned)
	}

	d.AddBootstrap(honest.DHTAddr())
	// AddBootstrap pings in the background; the next lookup starts from the
	// routing table, so wait until the honest node is in it.
	for d.dht.NumNodes() < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("the honest DHT node never entered the routing table")
		case <-time.After(10 * time.Millisecond):
		}
	}
	got, err := fetchAll(ctx, d, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(got) != digest {
		t.Fatal("wrong bytes")
	}
}

// A holder with the right metainfo but corrupt data is banned by the library
// for bad pieces; the file arrives whole from the honest holder.
func TestBadPiecesBanned(t *testing.T) {
	data := randomBytes(8<<20, 13)
	digest := digestOf(data)
	size := int64(len(data))

	honestBlobs := newDirBlobs(t)
	honestBlobs.put(t, data, "")
	// Slow, so that the downloader asks the fast bad holder for pieces too.
	honest := newNode(t, honestBlobs, withUploadRate(2<<20))
	if err := honest.Seed(digest, size); err != nil {
		t.Fatal(err)
	}

	badBlobs := newDirBlobs(t)
	badBlobs.put(t, corrupt(data), digest)
	badDir := t.TempDir()
	goodInfo, err := buildInfo(bytes.NewReader(data), digest, size)
	if err != nil {
		t.Fatal(err)
	}
	placeInfo(t, badDir, digest, goodInfo)
	bad := newNodeDir(t, badDir, badBlobs, withBootstrap(honest.DHTAddr()))
	if err := bad.Seed(digest, size); err != nil {
		t.Fatal(err)
	}

	d := newNode(t, newDirBlobs(t), withBootstrap(honest.DHTAddr(), bad.DHTAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := fetchAll(ctx, d, digest, size)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(got) != digest {
		t.Fatal("wrong bytes")
	}
	badIP := peerHost(bad.PeerAddr()).String()
	st := d.Stats()
	t.Logf("bytes by peer: %v; bans: %+v", st.Fetches[0].Peers, st.Banned)
	if !slices.Contains(bannedIPs(d), badIP) {
		t.Errorf("holder %s with corrupt data not banned", badIP)
	}
	if honestIP := peerHost(honest.PeerAddr()).String(); slices.Contains(bannedIPs(d), honestIP) {
		t.Errorf("honest holder %s banned", honestIP)
	}
}
