package swarm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

const (
	reannounceInterval = 30 * time.Minute // BEP 5 peers expire after about 30 minutes
	// DefaultAnnounceIdle is Config.AnnounceIdle's default: a blob nobody
	// read for a week leaves the DHT (docs/scale.md, the hot set).
	DefaultAnnounceIdle = 7 * 24 * time.Hour
	retryAnnounceAfter  = time.Minute // when an announce reached no DHT node
	announceTick        = 5 * time.Second
	announcesPerTick    = 25 // at most 5/s on average: 10,000 blobs take ~35 min
	idleFileTimeout     = time.Minute
)

// Seed makes a verified blob available to the swarm: it derives the info dict
// (hashing the blob once; the result is cached in DataDir/info), adds the
// torrent over the blob file in place, and announces it on the DHT under the
// rendezvous key and under its infohash. Seeding an already seeded blob only
// marks it recently seeded. Blobs below MinSize return ErrTooSmall.
//
// The first Seed of a blob reads the whole file; call it off the request path.
func (n *Node) Seed(hexDigest string, size int64) error {
	if n.cl == nil {
		return nil
	}
	if !validHexDigest(hexDigest) {
		return fmt.Errorf("seeding: %q is not a lower-case hex sha256 digest", hexDigest)
	}
	if size < n.minSize {
		return fmt.Errorf("seeding sha256:%s (%d bytes): %w (minimum %d)", hexDigest, size, ErrTooSmall, n.minSize)
	}
	n.mu.Lock()
	if e, ok := n.seeded[hexDigest]; ok && e.size == size {
		n.order.MoveToBack(e.elem)
		n.mu.Unlock()
		return nil
	}
	n.mu.Unlock()

	infoBytes, ih, err := n.infoFor(hexDigest, size)
	if err != nil {
		return err
	}
	e := &seedEntry{hex: hexDigest, size: size, ih: ih, info: infoBytes}
	e.storage = &blobStorage{blobs: n.cfg.Blobs, hexDigest: hexDigest, size: size}
	e.storage.onGone = func(err error) {
		n.log.Warn("stopping seeding of unreadable blob", "digest", hexDigest, "err", err)
		go n.Unseed(hexDigest)
	}

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return errors.New("seeding: node is closed")
	}
	if old, ok := n.seeded[hexDigest]; ok {
		// Raced with another Seed of the same blob, or re-seeded with another size.
		if old.size == size {
			n.mu.Unlock()
			return nil
		}
		n.unseedLocked(old)
	}
	e.elem = n.order.PushBack(e)
	n.seeded[hexDigest] = e
	var evict []*seedEntry
	for n.order.Len() > n.maxSeeded {
		old := n.order.Front().Value.(*seedEntry)
		evict = append(evict, old)
		n.unseedLocked(old)
	}
	_, fetching := n.fetchByIH[ih]
	n.mu.Unlock()
	for _, old := range evict {
		n.log.Debug("seed cap reached, no longer seeding", "digest", old.hex, "max", n.maxSeeded)
	}
	if !fetching {
		if err := n.addSeedTorrent(e); err != nil {
			n.Unseed(hexDigest)
			return err
		}
	}
	// With a Fetch of the same blob open, the torrent is added when it closes
	// (see fetchState.release).
	n.addLocalPeers(e)
	n.kickAnnouncer()
	return nil
}

// addSeedTorrent adds e's torrent over the blob file.
func (n *Node) addSeedTorrent(e *seedEntry) error {
	t, isNew := n.cl.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash:  e.ih,
		InfoBytes: e.info,
		Storage:   e.storage,
	})
	if !isNew {
		n.mu.Lock()
		_, fetching := n.fetchByIH[e.ih]
		n.mu.Unlock()
		if fetching {
			// A Fetch of this blob started meanwhile; its release adds the
			// seed torrent.
			return nil
		}
		return fmt.Errorf("seeding sha256:%s: infohash %s is already in use", e.hex, hexOf(e.ih))
	}
	n.mu.Lock()
	if n.seeded[e.hex] != e {
		n.mu.Unlock()
		t.Drop()
		return nil
	}
	e.t = t
	n.mu.Unlock()
	return nil
}

// addLocalPeers makes this node's own DHT answer get_peers for the blob even
// when its announces reach nobody (a DHT of one, or a node queried first), at
// each of its own addresses (ownHosts).
func (n *Node) addLocalPeers(e *seedEntry) {
	for _, ip := range n.ownHosts() {
		n.peers.addLocal(RendezvousKey(n.namespace, e.hex), netip.AddrPortFrom(ip, uint16(n.httpPort)))
		n.peers.addLocal(e.ih, netip.AddrPortFrom(ip, uint16(n.cl.LocalPort())))
	}
}

// Unseed stops seeding a blob (e.g. after the content store evicted it).
func (n *Node) Unseed(hexDigest string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.seeded[hexDigest]; ok {
		n.unseedLocked(e)
	}
}

func (n *Node) unseedLocked(e *seedEntry) {
	delete(n.seeded, e.hex)
	n.order.Remove(e.elem)
	n.peers.removeLocal(RendezvousKey(n.namespace, e.hex))
	n.peers.removeLocal(e.ih)
	if e.t != nil {
		t := e.t
		e.t = nil
		go t.Drop()
	}
}

// infoFor returns the canonical info bytes for a blob: primed (PrimeInfo),
// from the cache in DataDir/info, or by hashing the blob (and then caching
// them).
func (n *Node) infoFor(hexDigest string, size int64) ([]byte, metainfo.Hash, error) {
	if b := n.primed.take(hexDigest); b != nil {
		if ih, err := checkInfo(b, hexDigest, size); err == nil {
			n.cacheInfo(hexDigest, b)
			return b, ih, nil
		}
	}
	path := n.infoPath(hexDigest)
	if b, err := os.ReadFile(path); err == nil {
		if ih, err := checkInfo(b, hexDigest, size); err == nil {
			return b, ih, nil
		}
		n.log.Warn("ignoring unusable cached torrent info", "path", path)
	}
	f, err := n.openBlobChecked(hexDigest, size)
	if err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("seeding: %w", err)
	}
	defer f.Close()
	b, err := buildInfo(f, hexDigest, size)
	if err != nil {
		return nil, metainfo.Hash{}, err
	}
	n.cacheInfo(hexDigest, b)
	return b, metainfo.HashBytes(b), nil
}

func (n *Node) infoPath(hexDigest string) string {
	return filepath.Join(n.infoDir(), hexDigest[:2], hexDigest+".info")
}

// cacheInfo stores canonical info bytes so that seeding the blob later (or
// after a restart) needs no hashing.
func (n *Node) cacheInfo(hexDigest string, info []byte) {
	if err := writeFileAtomic(n.infoPath(hexDigest), info); err != nil {
		n.log.Warn("cannot cache torrent info; the blob will be rehashed when seeded", "digest", hexDigest, "err", err)
	}
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Magnet returns a magnet link for a seeded blob:
// magnet:?xt=urn:btih:<infohash>&dn=<hex>&xl=<size>&x.pe=<PeerAddr>
// (x.pe is left out when the node listens on an unspecified address).
func (n *Node) Magnet(hexDigest string, size int64) (string, error) {
	if n.cl == nil {
		return "", fmt.Errorf("magnet for sha256:%s: swarm mode is off", hexDigest)
	}
	n.mu.Lock()
	e, ok := n.seeded[hexDigest]
	n.mu.Unlock()
	if !ok || e.size != size {
		return "", fmt.Errorf("magnet for sha256:%s (%d bytes): %w: the blob is not seeded here; Seed it first", hexDigest, size, fs.ErrNotExist)
	}
	m := metainfo.Magnet{InfoHash: e.ih, DisplayName: hexDigest, Params: url.Values{}}
	m.Params.Set("xl", strconv.FormatInt(size, 10))
	if n.host.IsValid() {
		m.Params.Set("x.pe", n.PeerAddr())
	}
	return m.String(), nil
}

func (n *Node) kickAnnouncer() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// announcer re-announces seeded blobs on its own schedule instead of the
// library's per-torrent announcers: every blob about every 30 minutes, blobs
// whose last announce reached nobody after a minute, never more than
// announcesPerTick per tick; newly seeded blobs first.
func (n *Node) announcer() {
	defer n.wg.Done()
	tick := time.NewTicker(announceTick)
	defer tick.Stop()
	for {
		n.announceDue()
		n.closeIdleFiles()
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.kick:
		}
	}
}

func (n *Node) closeIdleFiles() {
	n.mu.Lock()
	var ss []*blobStorage
	for _, e := range n.seeded {
		ss = append(ss, e.storage)
	}
	n.mu.Unlock()
	for _, s := range ss {
		s.closeIfIdle(idleFileTimeout)
	}
}

func (n *Node) announceDue() {
	now := time.Now()
	n.mu.Lock()
	var due []*seedEntry
	for _, e := range n.seeded {
		switch {
		case e.lastAnnounce.IsZero(),
			!e.announced && now.Sub(e.lastAnnounce) > retryAnnounceAfter,
			now.Sub(e.lastAnnounce) > reannounceInterval:
			due = append(due, e)
		}
	}
	// Never-announced first, then the longest unannounced.
	slices.SortFunc(due, func(a, b *seedEntry) int { return a.lastAnnounce.Compare(b.lastAnnounce) })
	if len(due) > announcesPerTick {
		due = due[:announcesPerTick]
	}
	routine := map[*seedEntry]bool{}
	for _, e := range due {
		e.lastAnnounce = now
		routine[e] = e.announced
	}
	n.mu.Unlock()
	due = n.dropIdle(due, routine, now)
	if len(due) == 0 {
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, e := range due {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
			defer cancel()
			n.announces.Add(1)
			var okK, okIH bool
			if routine[e] {
				okK = n.reannounce(ctx, RendezvousKey(n.namespace, e.hex), n.httpPort)
				okIH = n.reannounce(ctx, e.ih, n.cl.LocalPort())
			} else {
				okK = n.announce(ctx, RendezvousKey(n.namespace, e.hex), n.httpPort, nil)
				okIH = n.announce(ctx, e.ih, n.cl.LocalPort(), nil)
			}
			reached := okK && okIH
			n.mu.Lock()
			e.announced = reached
			n.mu.Unlock()
			n.log.Debug("announced", "digest", e.hex, "infohash", hexOf(e.ih), "reached", reached)
		}()
	}
	wg.Wait()
}

// dropIdle returns due without the re-announces (routine: the last
// announce of the entry reached the DHT) of blobs nobody read for the
// announce idle time (Config.LastUsed, AnnounceIdle); a first announce and a
// retry after a failed one always go out. The dropped entries keep their new
// lastAnnounce: they are looked at again in reannounceInterval.
func (n *Node) dropIdle(due []*seedEntry, routine map[*seedEntry]bool, now time.Time) []*seedEntry {
	idle := n.cfg.AnnounceIdle // 0 became the default in New
	if n.cfg.LastUsed == nil || idle < 0 {
		return due
	}
	kept := due[:0]
	for _, e := range due {
		if last := n.cfg.LastUsed(e.hex); routine[e] && now.Sub(last) > idle {
			n.idleSkipped.Add(1)
			n.log.Debug("not re-announcing a blob nobody read lately", "digest", e.hex, "last_used", last)
			continue
		}
		kept = append(kept, e)
	}
	return kept
}

// announce runs a get_peers traversal toward key, announcing port (if not 0)
// to the closest nodes, and passes every peer found to found (if not nil). It
// reports whether any DHT node answered.
func (n *Node) announce(ctx context.Context, key metainfo.Hash, port int, found func(netip.AddrPort)) bool {
	var opts []dht.AnnounceOpt
	if port != 0 {
		opts = append(opts, dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: port}))
	}
	answered, _ := n.walk(ctx, key, opts, func(pv dht.PeersValues) {
		if found == nil {
			return
		}
		for _, p := range pv.Peers {
			if ap, ok := nodeAddrPort(p); ok {
				found(ap)
			}
		}
	})
	return answered
}

// walk runs a get_peers traversal toward key with opts and passes each
// reply to each. It reports whether any DHT node answered, and whether the
// traversal ran to its end (ctx did not cut it).
func (n *Node) walk(ctx context.Context, key metainfo.Hash, opts []dht.AnnounceOpt, each func(dht.PeersValues)) (answered, complete bool) {
	ann, err := n.dht.AnnounceTraversal(key, opts...)
	if err != nil {
		n.log.Debug("DHT traversal not started", "key", hexOf(key), "err", err)
		return false, false
	}
	defer ann.Close()
	for {
		select {
		case <-ctx.Done():
			return ann.NumContacted() > 0, false
		case pv, ok := <-ann.Peers:
			if !ok {
				// The traversal has stopped: its stats are no longer written.
				return ann.TraversalStats().NumResponses > 0, true
			}
			each(pv)
		}
	}
}

// SaturatedPeers is how many holders a re-announce walk must find under a
// key for the node to leave its announce_peer out: a full get_peers reply.
// docs/scale.md, policy 1: the closest nodes of a key held by H nodes then
// take about SaturatedPeers announces per 30 minutes instead of H, and a
// fetch still finds that many holders (it needs a few).
const SaturatedPeers = maxReply

// announceClosest is how many of the closest nodes that answered a walk
// with a token get the announce_peer (the library's K).
const announceClosest = 8

// reannounce is announce for the routine re-announce of a seeded blob: one
// get_peers walk toward key; when it found SaturatedPeers holders or more,
// no announce_peer is sent (the key's entries for this node expire while
// others' keep it found); else announce_peer with port goes to the
// announceClosest nodes closest to key that answered with a token, as a
// first announce does. It reports whether any DHT node answered.
func (n *Node) reannounce(ctx context.Context, key metainfo.Hash, port int) bool {
	type replied struct {
		addr  krpc.NodeAddr
		dist  int160.T // from key
		token string
	}
	target := int160.FromByteArray(key)
	holders := map[netip.AddrPort]struct{}{}
	var closest []replied
	answered, complete := n.walk(ctx, key, nil, func(pv dht.PeersValues) {
		for _, p := range pv.Peers {
			if ap, ok := nodeAddrPort(p); ok {
				holders[ap] = struct{}{}
			}
		}
		if pv.Return.Token != nil {
			closest = append(closest, replied{pv.NodeInfo.Addr, int160.Distance(int160.FromByteArray(pv.NodeInfo.ID), target), *pv.Return.Token})
		}
	})
	if !answered || !complete {
		return answered
	}
	if len(holders) >= SaturatedPeers {
		n.saturatedSkipped.Add(1)
		return true
	}
	slices.SortFunc(closest, func(a, b replied) int { return a.dist.Cmp(b.dist) })
	closest = slices.CompactFunc(closest, func(a, b replied) bool { return a.addr.String() == b.addr.String() })
	var wg sync.WaitGroup
	for _, a := range closest[:min(len(closest), announceClosest)] {
		wg.Go(func() {
			res := n.dht.Query(ctx, dht.NewAddr(a.addr.UDP()), "announce_peer", dht.QueryInput{
				MsgArgs: krpc.MsgArgs{InfoHash: krpc.ID(key), Port: &port, Token: a.token},
			})
			if err := res.ToError(); err != nil {
				n.log.Debug("announce_peer failed", "key", hexOf(key), "node", a.addr.String(), "err", err)
			}
		})
	}
	wg.Wait()
	return true
}

// Handler serves the metainfo of seeded blobs to other nodes:
// GET/HEAD <HandlerPath>sha256/<hex> → a .torrent file (application/x-bittorrent)
// whose only key is the canonical info dict, with header
// X-Pkgswarm-Peer-Port: the BitTorrent port of this node. Blobs that are not
// seeded here are 404. Mount it at HandlerPath on the pkgswarm HTTP server.
func (n *Node) Handler() http.Handler {
	return http.HandlerFunc(n.serveMetainfo)
}

func (n *Node) serveMetainfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "swarm metainfo: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, HandlerPath+"sha256/")
	if !ok || !validHexDigest(rest) {
		http.Error(w, "swarm metainfo: expected "+HandlerPath+"sha256/<lower-case hex digest>", http.StatusNotFound)
		return
	}
	n.mu.Lock()
	e, ok := n.seeded[rest]
	n.mu.Unlock()
	if !ok {
		http.Error(w, "swarm metainfo: sha256:"+rest+" is not seeded here", http.StatusNotFound)
		return
	}
	body, err := encodeTorrentFile(e.info)
	if err != nil {
		http.Error(w, "swarm metainfo: encoding: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-bittorrent")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set(peerPortHeader, strconv.Itoa(n.cl.LocalPort()))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

const peerPortHeader = "X-Pkgswarm-Peer-Port"

// peerHost returns the host part of addr as an IP, or the zero Addr.
func peerHost(addr string) netip.Addr {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
