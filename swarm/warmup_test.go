package swarm

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// A DHT node keeps the announces other nodes send it, but a lookup never
// queries the node it runs on: on a small DHT, where every node is among the
// closest to every key, the one node that was told where a blob is could not
// find it. B here holds A's announce (as B's DHT server stores it on an
// announce_peer) and knows no other DHT node at all.
func TestLookupAsksItsOwnStore(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(3<<20, 41)
	digest := blobs.put(t, data, "")
	a := newNode(t, blobs)
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b := newNode(t, newDirBlobs(t))
	b.peers.AddPeer(RendezvousKey(b.namespace, digest), krpc.NodeAddr{IP: a.host.AsSlice(), Port: a.httpPort})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := fetchAll(ctx, b, digest, int64(len(data)))
	if err != nil {
		t.Fatalf("B holds A's announce of sha256:%s but its fetch failed: %v", digest[:12], err)
	}
	if digestOf(got) != digest {
		t.Fatalf("fetched bytes hash to %s, want %s", digestOf(got), digest)
	}
}

// A node listening on every address (the usual --swarm-listen) learns the
// address other DHT nodes see it at from its bootstrap node's reply, and its
// own DHT server answers get_peers for the blobs it seeds with it (a local
// entry that never expires), as a node with one listen address does. Before,
// it held no entry for itself: a lookup that reached the holder before any
// node it had announced to found nothing there.
func TestWildcardNodeAnswersForItsOwnBlobs(t *testing.T) {
	b := newNode(t, newDirBlobs(t))
	blobs := newDirBlobs(t)
	data := randomBytes(2<<20, 42)
	digest := blobs.put(t, data, "")
	a := newNode(t, blobs, func(c *Config) { c.ListenAddr = "0.0.0.0:0" }, withBootstrap(b.DHTAddr()))
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	// A's queries to B (on a loopback address) leave from 127.0.0.1.
	key := RendezvousKey(a.namespace, digest)
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(a.httpPort))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a.peers.mu.Lock()
		_, ok := a.peers.local[key][want]
		a.peers.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.peers.mu.Lock()
	defer a.peers.mu.Unlock()
	t.Fatalf("A (listening on 0.0.0.0) holds %v as its own entries for its blob's rendezvous key; want %s among them", a.peers.local[key], want)
}

// A node whose bootstrap node is not up yet when it starts (an office where
// the machine everyone bootstraps from boots last) keeps pinging it, and
// reaches it soon after it comes up. Before, the one ping and the DHT's own
// bootstrap were lost, and the next try was the routing table's refresh a
// minute later: until then the bootstrap node did not know the node, so its
// announces and replies left the node out.
func TestBootstrapNodeThatStartsLate(t *testing.T) {
	ip := nextIP()
	// A free port on A's address, for both TCP (BitTorrent) and UDP (DHT).
	var addr string
	for range 20 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
			break
		}
		addr = ""
	}
	if addr == "" {
		t.Fatalf("no port on %s free for both TCP and UDP", ip)
	}
	b := newNode(t, newDirBlobs(t), withBootstrap(addr))
	time.Sleep(500 * time.Millisecond) // B's first ping is lost: nothing listens yet
	a := newNode(t, newDirBlobs(t), func(c *Config) { c.ListenAddr = addr })

	bDHT, err := netip.ParseAddrPort(b.DHTAddr())
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for time.Since(began) < 20*time.Second {
		for _, ni := range a.dht.Nodes() {
			if ap, ok := nodeAddrPort(ni.Addr); ok && ap == bDHT {
				t.Logf("A knew B %v after it started", time.Since(began).Round(time.Millisecond))
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("A (the bootstrap node, started after B) has not heard from B (%s) in %v; its table: %v", bDHT, time.Since(began).Round(time.Second), a.dht.Nodes())
}

// A DHT node can put any address in its reply's "ip": a node listening on
// every address keeps only one it can bind (its own), so a hostile DHT node
// cannot make it name another host as the holder of its blobs.
func TestOwnAddressMustBeBindable(t *testing.T) {
	n := newNode(t, newDirBlobs(t), func(c *Config) { c.ListenAddr = "0.0.0.0:0" })
	n.learnOwnAddr(krpc.NodeAddr{IP: net.ParseIP("192.0.2.7"), Port: 6881}) // TEST-NET-1: not this host's
	n.learnOwnAddr(krpc.NodeAddr{IP: net.ParseIP("::1"), Port: 6881})       // another family than the listener's
	if got := n.ownHosts(); len(got) != 0 {
		t.Fatalf("own addresses %v after replies naming 192.0.2.7 and ::1; want none", got)
	}
	n.learnOwnAddr(krpc.NodeAddr{IP: net.ParseIP("127.0.0.1"), Port: 6881})
	if got := n.ownHosts(); len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("own addresses %v after a reply naming 127.0.0.1; want [127.0.0.1]", got)
	}
}
