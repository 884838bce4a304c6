package swarm

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	"github.com/anacrolix/torrent/iplist"
	"github.com/anacrolix/torrent/metainfo"
)

// peerStore is the DHT's store of announced peers. anacrolix/dht's
// peer_store.InMemory returns corrupt addresses (upstream issue #79: it keys
// entries by IP only and decodes that key as a whole address), so this one is
// keyed by ip:port. Entries expire after ttl; each key holds at most perKey
// entries (the oldest goes first), and the store at most maxKeys keys.
//
// Local entries (this node's own seeded blobs) never expire: a get_peers that
// reaches this node finds it even when its announces had nobody to go to.
type peerStore struct {
	ttl     time.Duration
	perKey  int
	maxKeys int
	now     func() time.Time

	mu    sync.Mutex // protects peers, local
	peers map[metainfo.Hash]map[netip.AddrPort]time.Time
	local map[metainfo.Hash]map[netip.AddrPort]struct{}
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore() *peerStore {
	return &peerStore{
		ttl:     2 * time.Hour,
		perKey:  200,
		maxKeys: 100_000,
		now:     time.Now,
		peers:   map[metainfo.Hash]map[netip.AddrPort]time.Time{},
		local:   map[metainfo.Hash]map[netip.AddrPort]struct{}{},
	}
}

func nodeAddrPort(na krpc.NodeAddr) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(na.Port)), true
}

// AddPeer records an announce_peer (called by the DHT server).
func (s *peerStore) AddPeer(ih metainfo.Hash, na krpc.NodeAddr) {
	ap, ok := nodeAddrPort(na)
	if !ok {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.peers[ih]
	if m == nil {
		if len(s.peers) >= s.maxKeys {
			s.expireLocked(now)
			if len(s.peers) >= s.maxKeys {
				return
			}
		}
		m = map[netip.AddrPort]time.Time{}
		s.peers[ih] = m
	}
	if _, ok := m[ap]; !ok && len(m) >= s.perKey {
		var oldest netip.AddrPort
		var oldestT time.Time
		for a, t := range m {
			if oldestT.IsZero() || t.Before(oldestT) {
				oldest, oldestT = a, t
			}
		}
		delete(m, oldest)
	}
	m[ap] = now
}

func (s *peerStore) expireLocked(now time.Time) {
	for ih, m := range s.peers {
		for a, t := range m {
			if now.Sub(t) > s.ttl {
				delete(m, a)
			}
		}
		if len(m) == 0 {
			delete(s.peers, ih)
		}
	}
}

// maxReply is how many peers a get_peers reply lists at most (a UDP reply
// must stay small).
const maxReply = 50

// GetPeers answers a get_peers query: local entries first, then the freshest
// announced ones, at most maxReply in all.
func (s *peerStore) GetPeers(ih metainfo.Hash) []krpc.NodeAddr {
	s.mu.Lock()
	var ret []krpc.NodeAddr
	for ap := range s.local[ih] {
		ret = append(ret, toNodeAddr(ap))
	}
	s.mu.Unlock()
	for _, ap := range s.announced(ih) {
		if len(ret) >= maxReply {
			break
		}
		ret = append(ret, toNodeAddr(ap))
	}
	return ret
}

// announced returns the holders other nodes announced to this node under ih
// (not this node's own entries), freshest first, at most 50, and drops the
// expired ones. A lookup starts with them, since a DHT traversal never
// queries the node it runs on.
func (s *peerStore) announced(ih metainfo.Hash) []netip.AddrPort {
	const maxReturned = 50
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	type entry struct {
		ap netip.AddrPort
		t  time.Time
	}
	var es []entry
	for ap, t := range s.peers[ih] {
		if now.Sub(t) > s.ttl {
			delete(s.peers[ih], ap)
			continue
		}
		if _, ok := s.local[ih][ap]; ok {
			continue
		}
		es = append(es, entry{ap, t})
	}
	slices.SortFunc(es, func(a, b entry) int { return b.t.Compare(a.t) })
	var ret []netip.AddrPort
	for _, e := range es[:min(len(es), maxReturned)] {
		ret = append(ret, e.ap)
	}
	return ret
}

// addLocal records this node as a holder for ih.
func (s *peerStore) addLocal(ih metainfo.Hash, ap netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.local[ih]
	if m == nil {
		m = map[netip.AddrPort]struct{}{}
		s.local[ih] = m
	}
	m[ap] = struct{}{}
}

func (s *peerStore) removeLocal(ih metainfo.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.local, ih)
}

// banList is the node's time-limited ban list, by IP. It is the client's
// IPBlocklist (consulted for DHT nodes, incoming and outgoing peer
// connections), so it must answer without calling back into the client.
type banList struct {
	now func() time.Time

	mu    sync.Mutex // protects until, why
	until map[netip.Addr]time.Time
	why   map[netip.Addr]string
}

var _ iplist.Ranger = (*banList)(nil)

func newBanList() *banList {
	return &banList{now: time.Now, until: map[netip.Addr]time.Time{}, why: map[netip.Addr]string{}}
}

func (b *banList) ban(ip netip.Addr, until time.Time, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ip = ip.Unmap()
	if until.After(b.until[ip]) {
		b.until[ip] = until
		b.why[ip] = why
	}
}

func (b *banList) banned(ip netip.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ip = ip.Unmap()
	u, ok := b.until[ip]
	if !ok {
		return false
	}
	if b.now().After(u) {
		delete(b.until, ip)
		delete(b.why, ip)
		return false
	}
	return true
}

// Lookup implements iplist.Ranger.
func (b *banList) Lookup(ip net.IP) (iplist.Range, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !b.banned(a) {
		return iplist.Range{}, false
	}
	b.mu.Lock()
	why := b.why[a.Unmap()]
	b.mu.Unlock()
	return iplist.Range{First: ip, Last: ip, Description: "pkgswarm ban: " + why}, true
}

// NumRanges implements iplist.Ranger.
func (b *banList) NumRanges() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.until)
}

// list returns the bans in force.
func (b *banList) list() []Banned {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var ret []Banned
	for ip, u := range b.until {
		if now.After(u) {
			continue
		}
		ret = append(ret, Banned{Addr: ip.String(), Until: u, Reason: b.why[ip]})
	}
	return ret
}

func toNodeAddr(ap netip.AddrPort) krpc.NodeAddr {
	ip := ap.Addr().Unmap()
	return krpc.NodeAddr{IP: net.IP(ip.AsSlice()), Port: int(ap.Port())}
}
