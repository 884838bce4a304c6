package swarm

import (
	"context"
	"crypto/sha1"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// Downloads in flight across sites. A blob is seeded only once it is whole
// and verified, and BitTorrent cannot carry a file nobody holds whole (its
// piece hashes come with the info dict, which only a holder can derive). So
// that the sites of a fleet that all miss a file at once fetch it from the
// origin once, a node whose download goes past its site (the pipeline's
// wide stage) announces it under
//
//	F = SHA1(namespace + "/flight/sha256:" + hex)
//
// with its pkgswarm HTTP port, where the peer protocol serves the download
// as it grows (ranges, X-Pkgswarm-Have, …). Other sites' nodes find it with
// Lookup and read from it by ranges, as LAN peers do (proxy/fetch/lan); the
// bytes are verified as one file by each reader's pipeline.

// FlightKey returns F for a blob (see above).
func FlightKey(namespace, hexDigest string) metainfo.Hash {
	return metainfo.Hash(sha1.Sum([]byte(namespace + "/flight/sha256:" + hexDigest)))
}

// Found is what Lookup found for a blob: pkgswarm HTTP addresses
// ("ip:port") of nodes downloading it now (Flights) and of holders seeding
// it (Holders).
type Found struct {
	Flights, Holders []string
}

// Flights this node's own DHT server answers for (AnnounceFlight).
const (
	maxFlights     = 1000      // more at once drops all (they are re-announced on the next fetch)
	flightLocalTTL = time.Hour // a download longer than this is still found at the DHT nodes it announced to
)

// AnnounceFlight announces, in the background, that this node downloads the
// blob (see FlightKey); its own DHT server answers for it too, at its own
// addresses (ownHosts), for flightLocalTTL or until EndFlight. The channel
// it returns closes when the announce has reached the DHT nodes it goes to
// (or failed): a Lookup started after that is seen by every node that looks
// after it, so of two sites missing a file at once at least one finds the
// other. It does nothing when the swarm is off, and calling it again for the
// same blob within a minute does nothing (the channel is closed).
func (n *Node) AnnounceFlight(hexDigest string) <-chan struct{} {
	done := make(chan struct{})
	if n.cl == nil || !validHexDigest(hexDigest) {
		close(done)
		return done
	}
	key := FlightKey(n.namespace, hexDigest)
	now := time.Now()
	n.flightMu.Lock()
	if n.flights == nil {
		n.flights = map[string]time.Time{}
	}
	if t, ok := n.flights[hexDigest]; ok && now.Sub(t) < time.Minute {
		n.flightMu.Unlock()
		close(done)
		return done
	}
	var dropped []string
	if len(n.flights) >= maxFlights {
		for h := range n.flights {
			dropped = append(dropped, h)
		}
		clear(n.flights)
	}
	n.flights[hexDigest] = now
	n.flightMu.Unlock()
	for _, h := range dropped {
		n.peers.removeLocal(FlightKey(n.namespace, h))
	}
	n.addLocalFlight(hexDigest)
	time.AfterFunc(flightLocalTTL, func() { n.endFlight(hexDigest, now) })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		n.announces.Add(1)
		n.announce(ctx, key, n.httpPort, nil)
	}()
	return done
}

// addLocalFlight makes this node's own DHT server answer for its flight of
// hexDigest (a DHT of few nodes), at each of its own addresses.
func (n *Node) addLocalFlight(hexDigest string) {
	for _, ip := range n.ownHosts() {
		n.peers.addLocal(FlightKey(n.namespace, hexDigest), netip.AddrPortFrom(ip, uint16(n.httpPort)))
	}
}

// EndFlight stops this node's own DHT server from answering for a blob's
// flight (entries stored at other DHT nodes expire by themselves).
func (n *Node) EndFlight(hexDigest string) {
	if n.cl == nil || !validHexDigest(hexDigest) {
		return
	}
	n.endFlight(hexDigest, time.Time{})
}

// endFlight ends the flight of hexDigest if it was announced at since (any
// time when since is zero).
func (n *Node) endFlight(hexDigest string, since time.Time) {
	n.flightMu.Lock()
	t, ok := n.flights[hexDigest]
	if !ok || !since.IsZero() && !t.Equal(since) {
		n.flightMu.Unlock()
		return
	}
	delete(n.flights, hexDigest)
	n.flightMu.Unlock()
	n.peers.removeLocal(FlightKey(n.namespace, hexDigest))
}

// Lookup looks a blob up on the DHT under its flight key and its
// rendezvous key at once, until ctx ends or both traversals are done, and
// returns the HTTP addresses found, without this node's own.
func (n *Node) Lookup(ctx context.Context, hexDigest string) (Found, error) {
	if n.cl == nil {
		return Found{}, fmt.Errorf("swarm lookup of sha256:%s: %w: swarm mode is off", hexDigest, ErrNotFound)
	}
	if !validHexDigest(hexDigest) {
		return Found{}, fmt.Errorf("swarm lookup: %q is not a lower-case hex sha256 digest", hexDigest)
	}
	var mu sync.Mutex
	var f Found
	// A node can be in both lists: a holder that fetched the blob beyond
	// its site announced a flight first.
	add := func(list *[]string) func(netip.AddrPort) {
		return func(ap netip.AddrPort) {
			a := ap.String()
			mu.Lock()
			defer mu.Unlock()
			if slices.Contains(*list, a) || n.isOwn(ap, n.httpPort) || n.bans.banned(ap.Addr()) {
				return
			}
			*list = append(*list, a)
		}
	}
	// The announces this node's DHT server holds first: a traversal never
	// queries the node it runs on.
	fk, rk := FlightKey(n.namespace, hexDigest), RendezvousKey(n.namespace, hexDigest)
	for _, ap := range n.peers.announced(fk) {
		add(&f.Flights)(ap)
	}
	for _, ap := range n.peers.announced(rk) {
		add(&f.Holders)(ap)
	}
	var wg sync.WaitGroup
	wg.Go(func() { n.announce(ctx, fk, 0, add(&f.Flights)) })
	wg.Go(func() { n.announce(ctx, rk, 0, add(&f.Holders)) })
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return Found{Flights: append([]string(nil), f.Flights...), Holders: append([]string(nil), f.Holders...)}, nil
}

// HTTPAddr returns "ip:port" of the pkgswarm HTTP server as other nodes
// reach it: at the listen address, or for a node listening on every address
// at the first address DHT nodes saw it at (see learnOwnAddr); "" while no
// such address is known or when the swarm is off.
func (n *Node) HTTPAddr() string {
	if n.cl == nil {
		return ""
	}
	hosts := n.ownHosts()
	if len(hosts) == 0 {
		return ""
	}
	return netip.AddrPortFrom(hosts[0], uint16(n.httpPort)).String()
}
