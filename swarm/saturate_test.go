package swarm

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/metainfo"
)

// fillKey records holders fake holders of key in n's peer store.
func fillKey(n *Node, key metainfo.Hash, holders int) {
	for i := range holders {
		n.peers.AddPeer(key, krpc.NodeAddr{IP: net.IPv4(10, 9, byte(i/250), byte(1+i%250)), Port: 6881})
	}
}

// announcedAt reports whether n's peer store holds an entry for key at
// port from a host other than the fake holders of fillKey.
func announcedAt(n *Node, key metainfo.Hash, port int) bool {
	n.peers.mu.Lock()
	defer n.peers.mu.Unlock()
	for ap := range n.peers.peers[key] {
		if ap.Port() == uint16(port) && !netip.MustParsePrefix("10.9.0.0/16").Contains(ap.Addr()) {
			return true
		}
	}
	return false
}

func joinedDHT(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.dht.NumNodes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the node did not reach its bootstrap node in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// docs/scale.md, policy 1: a re-announce whose walk finds a full get_peers
// reply of holders under the key sends no announce_peer; one that finds
// fewer sends it, with the token of the node that answered, as a first
// announce does.
func TestSaturatedKeyIsNotReannounced(t *testing.T) {
	a := newNode(t, newDirBlobs(t)) // the DHT node closest to every key
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	joinedDHT(t, b)
	full, few := metainfo.Hash{1}, metainfo.Hash{2}
	fillKey(a, full, SaturatedPeers)
	fillKey(a, few, SaturatedPeers-1)
	const port = 4321
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, key := range []metainfo.Hash{full, few} {
		if !b.reannounce(ctx, key, port) {
			t.Fatalf("re-announce of %x: no DHT node answered", key[:2])
		}
	}
	if announcedAt(a, full, port) {
		t.Error("a key with a full reply of holders was announced again")
	}
	if !announcedAt(a, few, port) {
		t.Error("a key with fewer holders than a full reply was not announced")
	}
	if got := b.Stats().SaturatedSkipped; got != 1 {
		t.Errorf("SaturatedSkipped = %d, want 1", got)
	}
}

// The announcer uses it for routine re-announces only: a seeded blob's first
// announce goes out under a saturated key too (the node must be findable
// before it leaves the key to others), its re-announce 30 minutes later does
// not.
func TestReannounceOfASeededBlobSkipsASaturatedKey(t *testing.T) {
	a := newNode(t, newDirBlobs(t))
	blobs := newDirBlobs(t)
	digest := blobs.put(t, randomBytes(2<<20, 9), "")
	b := newNode(t, blobs, withBootstrap(a.DHTAddr()))
	joinedDHT(t, b)
	rk := RendezvousKey(b.namespace, digest)
	fillKey(a, rk, SaturatedPeers)
	if err := b.Seed(digest, 2<<20); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	e := b.seeded[digest]
	b.mu.Unlock()
	fillKey(a, e.ih, SaturatedPeers)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the first announce did not reach the saturated key", func() bool { return announcedAt(a, rk, b.httpPort) })
	waitFor("the first announce did not end", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return e.announced
	})
	// Its entries gone (as after their expiry), the blob is due again.
	a.peers.mu.Lock()
	delete(a.peers.peers, rk)
	delete(a.peers.peers, e.ih)
	a.peers.mu.Unlock()
	fillKey(a, rk, SaturatedPeers)
	fillKey(a, e.ih, SaturatedPeers)
	b.mu.Lock()
	e.lastAnnounce = time.Now().Add(-reannounceInterval - time.Minute)
	b.mu.Unlock()
	b.announceDue()
	waitFor("the re-announce did not find both keys saturated", func() bool { return b.Stats().SaturatedSkipped == 2 })
	if announcedAt(a, rk, b.httpPort) || announcedAt(a, e.ih, b.cl.LocalPort()) {
		t.Error("the re-announce under a saturated key sent announce_peer")
	}
}
