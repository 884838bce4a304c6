package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

const (
	maxRecent = 32
	// metainfoWindow is how long discovery keeps collecting metainfo answers
	// after the first valid one, so that a single lying holder is outvoted.
	metainfoWindow = 250 * time.Millisecond
	// metainfoQuorum ends discovery early once this many holders agree.
	metainfoQuorum = 3
	// badSourceBan is how long a peer that served poisoned metainfo or data
	// is banned.
	badSourceBan = time.Hour
)

// fetchState is one download in progress, shared by concurrent Fetches of the
// same blob. refs, dead and t are protected by Node.mu.
type fetchState struct {
	n      *Node
	hex    string
	size   int64
	ctx    context.Context // cancelled when the last reader closes
	cancel context.CancelFunc
	ready  chan struct{} // closed when discovery has finished; then err, ih, t are set
	err    error
	ih     metainfo.Hash
	info   []byte // the info bytes of ih
	// sources are the hosts whose metainfo named ih: if the data turns out
	// not to hash to the digest, they lied.
	sources []netip.Addr
	rec     *fetchRecord

	refs int
	dead bool
	t    *torrent.Torrent
}

type fetchRecord struct {
	mu sync.Mutex // protects s
	s  FetchStats
}

func (r *fetchRecord) snapshot() FetchStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.s
	s.Peers = maps.Clone(r.s.Peers)
	return s
}

func (r *fetchRecord) addBytes(peer string, n int64) {
	r.mu.Lock()
	r.s.Peers[peer] += n
	r.mu.Unlock()
}

func (r *fetchRecord) finish(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.s.Finished.IsZero() {
		return
	}
	r.s.Finished = time.Now()
	if err != nil && r.s.Err == "" {
		r.s.Err = err.Error()
	}
}

// Fetch downloads a blob from the swarm and streams it in order as pieces
// arrive and pass their SHA-1 check. It finds holders through peer hints and
// the DHT rendezvous key, takes the metainfo most holders agree on (rejecting
// and banning holders whose metainfo is not the canonical one for
// (hexDigest, size)), then downloads from every holder found, plus the given
// origin URLs as BEP 19 web seeds.
//
// It returns ErrNotFound (wrapped) when no holder answers within
// Config.FindTimeout, ErrTooSmall below MinSize. The reader checks the whole
// file's SHA-256 at the end: when it does not match, Read returns an error
// instead of io.EOF and the holders that vouched for the metainfo are banned.
// The caller still verifies what it stores. Close releases the scratch file;
// ctx also bounds the reads.
func (n *Node) Fetch(ctx context.Context, hexDigest string, size int64, webSeeds []string) (io.ReadCloser, error) {
	if !validHexDigest(hexDigest) {
		return nil, fmt.Errorf("swarm fetch: %q is not a lower-case hex sha256 digest", hexDigest)
	}
	if n.cl == nil {
		return nil, fmt.Errorf("swarm fetch of sha256:%s: %w: swarm mode is off", hexDigest, ErrNotFound)
	}
	if size < n.minSize {
		return nil, fmt.Errorf("swarm fetch of sha256:%s (%d bytes): %w (minimum %d); fetch it over HTTP", hexDigest, size, ErrTooSmall, n.minSize)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("swarm fetch of sha256:%s: %w: node is closed", hexDigest, ErrNotFound)
	}
	if e, ok := n.seeded[hexDigest]; ok && e.size == size {
		n.mu.Unlock()
		if f, err := n.openBlobChecked(hexDigest, size); err == nil {
			return f, nil
		}
		n.mu.Lock()
	}
	fs := n.fetches[hexDigest]
	if fs != nil && fs.size != size {
		n.mu.Unlock()
		return nil, fmt.Errorf("swarm fetch of sha256:%s: size %d conflicts with a fetch in progress for %d bytes", hexDigest, size, fs.size)
	}
	if fs == nil {
		fs = &fetchState{n: n, hex: hexDigest, size: size, ready: make(chan struct{})}
		fs.ctx, fs.cancel = context.WithCancel(n.ctx)
		fs.rec = &fetchRecord{s: FetchStats{Digest: hexDigest, Size: size, Started: time.Now(), Peers: map[string]int64{}}}
		n.fetches[hexDigest] = fs
		n.recent = append(n.recent, fs.rec)
		if len(n.recent) > maxRecent {
			n.recent = n.recent[len(n.recent)-maxRecent:]
		}
		hints := append([]string(nil), n.hints[hexDigest]...)
		go fs.discover(hints, webSeeds)
	}
	fs.refs++
	n.mu.Unlock()

	select {
	case <-fs.ready:
	case <-ctx.Done():
		fs.release()
		return nil, fmt.Errorf("swarm fetch of sha256:%s: %w", hexDigest, ctx.Err())
	}
	if fs.err != nil {
		fs.release()
		return nil, fs.err
	}
	if len(webSeeds) > 0 {
		fs.t.AddWebSeeds(webSeeds)
	}
	r := fs.t.NewReader()
	r.SetContext(ctx)
	return &fetchReader{fs: fs, r: r, h: sha256.New()}, nil
}

// metaResult is one holder's answer to a metainfo request.
type metaResult struct {
	addr     string // the HTTP address asked
	info     []byte
	ih       metainfo.Hash
	peerPort int // its BitTorrent port, 0 if it gave none
	err      error
}

// vote gathers the holders that served one infohash.
type vote struct {
	info    []byte
	first   time.Time
	sources []netip.Addr
	peers   []netip.AddrPort
}

// discover finds the metainfo and starts the download. It closes fs.ready.
func (fs *fetchState) discover(hints, webSeeds []string) {
	n := fs.n
	defer close(fs.ready)
	ctx, cancel := context.WithTimeout(fs.ctx, n.cfg.FindTimeout)
	defer cancel()
	key := RendezvousKey(n.namespace, fs.hex)

	cands := make(chan string)
	go func() {
		defer close(cands)
		// Hints first, then the holders announced to this node itself (a
		// traversal never queries the node it runs on; on a small DHT this
		// node is among the closest to every key), then the DHT.
		for _, ap := range n.peers.announced(key) {
			hints = append(hints, ap.String())
		}
		for _, h := range hints {
			select {
			case cands <- h:
			case <-ctx.Done():
				return
			}
		}
		n.announce(ctx, key, 0, func(ap netip.AddrPort) {
			select {
			case cands <- ap.String():
			case <-ctx.Done():
			}
		})
	}()

	results := make(chan metaResult)
	seen := map[string]bool{}
	sem := make(chan struct{}, 8)
	votes := map[metainfo.Hash]*vote{}
	var window <-chan time.Time
	pending := 0
	asked := 0
loop:
	for cands != nil || pending > 0 {
		select {
		case a, ok := <-cands:
			if !ok {
				cands = nil
				continue
			}
			if seen[a] {
				continue
			}
			seen[a] = true
			if ap, err := netip.ParseAddrPort(a); err == nil && n.isOwn(ap, n.httpPort) {
				continue
			}
			if ip := peerHost(a); ip.IsValid() && n.bans.banned(ip) {
				continue
			}
			pending++
			asked++
			go func() {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					results <- metaResult{addr: a, err: ctx.Err()}
					return
				}
				r := n.getMetainfo(ctx, a, fs.hex, fs.size)
				<-sem
				results <- r
			}()
		case r := <-results:
			pending--
			if r.err != nil {
				if errors.Is(r.err, ErrBadMetainfo) {
					if ip := peerHost(r.addr); ip.IsValid() {
						n.ban(ip, badSourceBan, "served poisoned metainfo: "+r.err.Error())
					}
				} else {
					n.log.Debug("holder gave no metainfo", "addr", r.addr, "digest", fs.hex, "err", r.err)
				}
				continue
			}
			v := votes[r.ih]
			if v == nil {
				v = &vote{info: r.info, first: time.Now()}
				votes[r.ih] = v
			}
			ip := peerHost(r.addr)
			v.sources = append(v.sources, ip)
			if r.peerPort > 0 && ip.IsValid() {
				v.peers = append(v.peers, netip.AddrPortFrom(ip, uint16(r.peerPort)))
			}
			if window == nil {
				window = time.After(metainfoWindow)
			}
			if len(v.sources) >= metainfoQuorum {
				break loop
			}
		case <-window:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	// Let the askers still running finish without blocking.
	cancel()
	go func() {
		for ; pending > 0; pending-- {
			<-results
		}
	}()

	var best *vote
	var bestIH metainfo.Hash
	for ih, v := range votes {
		if best == nil || len(v.sources) > len(best.sources) ||
			(len(v.sources) == len(best.sources) && v.first.Before(best.first)) {
			best, bestIH = v, ih
		}
	}
	if best == nil {
		fs.err = fmt.Errorf("swarm fetch of sha256:%s: %w: no holder gave valid metainfo (%d asked, lookup budget %v)", fs.hex, ErrNotFound, asked, n.cfg.FindTimeout)
		fs.rec.finish(fs.err)
		return
	}
	if len(votes) > 1 {
		n.log.Warn("holders disagree on the metainfo; taking the majority", "digest", fs.hex, "infohash", hexOf(bestIH), "votes", len(best.sources), "alternatives", len(votes)-1)
	}
	fs.ih = bestIH
	fs.info = best.info
	fs.sources = best.sources
	fs.rec.mu.Lock()
	fs.rec.s.InfoHash = hexOf(bestIH)
	fs.rec.mu.Unlock()

	n.mu.Lock()
	if fs.dead {
		n.mu.Unlock()
		fs.err = fmt.Errorf("swarm fetch of sha256:%s: cancelled", fs.hex)
		return
	}
	n.fetchByIH[bestIH] = fs
	n.mu.Unlock()

	var rnd [8]byte
	rand.Read(rnd[:])
	st := &scratchStorage{path: filepath.Join(n.scratchDir(), fs.hex+"."+hex.EncodeToString(rnd[:])+".part")}
	t, isNew := n.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: bestIH, InfoBytes: best.info, Storage: st})
	if !isNew {
		fs.err = fmt.Errorf("swarm fetch of sha256:%s: %w: infohash %s is already active here", fs.hex, ErrNotFound, hexOf(bestIH))
		n.mu.Lock()
		delete(n.fetchByIH, bestIH)
		n.mu.Unlock()
		fs.rec.finish(fs.err)
		return
	}
	n.mu.Lock()
	if fs.dead {
		n.mu.Unlock()
		t.Drop()
		fs.err = fmt.Errorf("swarm fetch of sha256:%s: cancelled", fs.hex)
		return
	}
	fs.t = t
	n.mu.Unlock()

	fs.addPeers(t, best.peers...)
	if len(webSeeds) > 0 {
		t.AddWebSeeds(webSeeds)
	}
	t.DownloadAll()
	go fs.findPeers(t)
}

func (fs *fetchState) addPeers(t *torrent.Torrent, aps ...netip.AddrPort) {
	var pis []torrent.PeerInfo
	for _, ap := range aps {
		if fs.n.isOwn(ap, fs.n.cl.LocalPort()) || fs.n.bans.banned(ap.Addr()) {
			continue
		}
		pis = append(pis, torrent.PeerInfo{
			Addr:   &net.TCPAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())},
			Source: torrent.PeerSourceDhtGetPeers,
		})
	}
	if len(pis) > 0 {
		t.AddPeers(pis)
	}
}

// findPeers announces this download under the infohash and adds every peer
// found (other holders, other downloaders) while the download is incomplete:
// downloaders that start together find each other this way and share pieces.
func (fs *fetchState) findPeers(t *torrent.Torrent) {
	n := fs.n
	delay := 250 * time.Millisecond
	for {
		fs.addPeers(t, n.peers.announced(fs.ih)...)
		ctx, cancel := context.WithTimeout(fs.ctx, 10*time.Second)
		n.announce(ctx, fs.ih, n.cl.LocalPort(), func(ap netip.AddrPort) { fs.addPeers(t, ap) })
		cancel()
		select {
		case <-t.Complete().On():
			return
		case <-fs.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// getMetainfo asks one holder for the blob's metainfo.
func (n *Node) getMetainfo(ctx context.Context, addr, hexDigest string, size int64) metaResult {
	res := metaResult{addr: addr}
	u := "http://" + addr + HandlerPath + "sha256/" + hexDigest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		res.err = err
		return res
	}
	resp, err := n.httpClient.Do(req)
	if err != nil {
		res.err = err
		return res
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		res.err = fmt.Errorf("GET %s: %s", u, resp.Status)
		return res
	}
	limit := maxTorrentFileSize(size)
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		res.err = fmt.Errorf("GET %s: reading body: %w", u, err)
		return res
	}
	res.info, res.ih, res.err = ParseTorrentFile(body, hexDigest, size)
	if res.err != nil {
		res.err = fmt.Errorf("GET %s: %w", u, res.err)
		return res
	}
	if p, err := strconv.Atoi(resp.Header.Get(peerPortHeader)); err == nil && p > 0 && p < 65536 {
		res.peerPort = p
	}
	return res
}

// release drops one reference; the last one stops the download, deletes the
// scratch file and, if the blob was seeded meanwhile, starts seeding it.
func (fs *fetchState) release() {
	n := fs.n
	n.mu.Lock()
	fs.refs--
	if fs.refs > 0 {
		n.mu.Unlock()
		return
	}
	fs.dead = true
	if n.fetches[fs.hex] == fs {
		delete(n.fetches, fs.hex)
	}
	if n.fetchByIH[fs.ih] == fs {
		delete(n.fetchByIH, fs.ih)
	}
	t := fs.t
	fs.t = nil
	e := n.seeded[fs.hex]
	n.mu.Unlock()
	fs.cancel()
	if t != nil {
		// Stop serving its pieces first: a peer request still being read
		// when the torrent closes crashes the library (see scratchCloseGrace).
		t.DisallowDataUpload()
		t.Drop()
	}
	fs.rec.finish(nil)
	if e != nil {
		n.mu.Lock()
		pending := e.t == nil && n.seeded[fs.hex] == e
		n.mu.Unlock()
		if pending {
			if err := n.addSeedTorrent(e); err != nil {
				n.log.Warn("seeding after fetch", "digest", fs.hex, "err", err)
			}
		}
	}
}

// poisoned bans everyone who vouched for or delivered the data of a download
// whose whole-file digest is wrong.
func (fs *fetchState) poisoned(got string) {
	why := fmt.Sprintf("metainfo/data for sha256:%s hashed to sha256:%s", fs.hex, got)
	ips := map[netip.Addr]bool{}
	for _, ip := range fs.sources {
		ips[ip] = true
	}
	for peer := range fs.rec.snapshot().Peers {
		if ip, err := netip.ParseAddr(peer); err == nil {
			ips[ip.Unmap()] = true
		}
	}
	for ip := range ips {
		if ip.IsValid() {
			fs.n.ban(ip, badSourceBan, why)
		}
	}
}

// fetchReader streams a download and checks its SHA-256 at the end.
type fetchReader struct {
	fs     *fetchState
	r      torrent.Reader
	h      hash.Hash
	n      int64
	err    error // sticky
	closed sync.Once
}

func (fr *fetchReader) Read(p []byte) (int, error) {
	if fr.err != nil {
		return 0, fr.err
	}
	k, err := fr.r.Read(p)
	fr.h.Write(p[:k])
	fr.n += int64(k)
	if err == io.EOF {
		if fr.n != fr.fs.size {
			err = fmt.Errorf("swarm fetch of sha256:%s ended after %d of %d bytes", fr.fs.hex, fr.n, fr.fs.size)
		} else if sum := fr.h.Sum(nil); !bytes.Equal(sum, mustHex(fr.fs.hex)) {
			got := hex.EncodeToString(sum)
			fr.fs.poisoned(got)
			err = fmt.Errorf("swarm fetch of sha256:%s: the data hashes to sha256:%s; the holders that served its metainfo are banned", fr.fs.hex, got)
		} else {
			// Every piece matched its hash and the whole file matches the
			// digest: these info bytes are right, and seeding the blob later
			// needs no rehash.
			fr.fs.n.cacheInfo(fr.fs.hex, fr.fs.info)
		}
	}
	if err != nil {
		fr.err = err
		if err != io.EOF {
			fr.fs.rec.finish(err)
		}
	}
	return k, err
}

func (fr *fetchReader) Close() error {
	fr.closed.Do(func() {
		fr.r.Close()
		fr.fs.release()
		if fr.err == nil {
			fr.err = errors.New("swarm fetch: read after Close")
		}
	})
	return nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// onUsefulData counts payload per peer for FetchStats. It runs with the
// client lock held: it must not call into the client.
func (n *Node) onUsefulData(ev torrent.ReceivedUsefulDataEvent) {
	p := ev.Peer
	if p == nil || ev.Message == nil || p.Torrent() == nil {
		return
	}
	ih := p.Torrent().InfoHash()
	n.mu.Lock()
	fs := n.fetchByIH[ih]
	n.mu.Unlock()
	if fs == nil {
		return
	}
	fs.rec.addBytes(peerKey(p), int64(len(ev.Message.Piece)))
}

func peerKey(p *torrent.Peer) string {
	addr := fmt.Sprint(p.RemoteAddr)
	if p.Network == "http" {
		return "web " + addr
	}
	if ip := peerHost(addr); ip.IsValid() {
		return ip.String()
	}
	return addr
}

// libLogHandler passes the torrent library's logs to the node's logger: Info
// and below as Debug, and bans of peers that sent bad pieces as Warn (and
// into Stats).
type libLogHandler struct {
	n     *Node
	inner slog.Handler
}

func (h *libLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.inner.Enabled(ctx, l)
}

func (h *libLogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "smart banned peer", "piece failed hash. banning peer":
		addr := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != "peer" {
				return true
			}
			switch v := a.Value.Any().(type) {
			case netip.Addr:
				addr = v.Unmap().String()
			case *torrent.Peer:
				addr = peerKey(v)
			case *torrent.PeerConn:
				addr = peerKey(&v.Peer)
			default:
				addr = a.Value.String()
			}
			return false
		})
		h.n.mu.Lock()
		if len(h.n.libBans) < 10000 {
			h.n.libBans[addr] = r.Message
		}
		h.n.mu.Unlock()
		w := slog.NewRecord(r.Time, slog.LevelWarn, "torrent library banned a peer that sent bad data", r.PC)
		w.AddAttrs(slog.String("peer", addr), slog.String("library_message", r.Message))
		return h.inner.Handle(ctx, w)
	}
	if r.Level < slog.LevelWarn ||
		// A lan-mode node with nobody to bootstrap from yet is normal; slow
		// lock handlers are the library's own profiling under load.
		strings.Contains(r.Message, "no initial nodes") ||
		strings.Contains(r.Message, "took a long time") {
		r.Level = slog.LevelDebug
	}
	if !h.inner.Enabled(ctx, r.Level) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *libLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &libLogHandler{n: h.n, inner: h.inner.WithAttrs(as)}
}

func (h *libLogHandler) WithGroup(name string) slog.Handler {
	return &libLogHandler{n: h.n, inner: h.inner.WithGroup(name)}
}
