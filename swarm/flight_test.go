package swarm

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A download announced under the flight key is found by another node's
// Lookup, apart from the holders seeding the blob; a holder that announced a
// flight before (it fetched the blob beyond its site) is listed as a holder
// too.
func TestFlightAnnounceAndLookup(t *testing.T) {
	blobsA := newDirBlobs(t)
	data := randomBytes(2<<20, 4)
	digest := blobsA.put(t, data, "")
	a := newNode(t, blobsA)                                     // seeds the blob
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr())) // downloads it
	c := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr())) // looks
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b.AnnounceFlight(digest)
	a.AnnounceFlight(digest)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		f, err := c.Lookup(ctx, digest)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(f.Flights, b.HTTPAddr()) && slices.Contains(f.Flights, a.HTTPAddr()) && slices.Contains(f.Holders, a.HTTPAddr()) {
			if slices.Contains(f.Holders, b.HTTPAddr()) {
				t.Fatalf("flights and holders mixed up: %+v", f)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s Lookup found %+v; want flight %s and holder %s", f, b.HTTPAddr(), a.HTTPAddr())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The channel AnnounceFlight returns closes only once the announce was
// answered by the DHT nodes it went to: two sites that miss a file together
// each announce, then look, so the one that looks second finds the first.
// (The announce was fire-and-forget before: a lookup right after it, which
// takes about as long as the announce's own walk, could miss it, and both
// sites went to the origin — 2.09 origin copies in one many-sites run.)
func TestAnnounceFlightDoneMeansAnswered(t *testing.T) {
	a := newNode(t, newDirBlobs(t))
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	c := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	for _, n := range []*Node{b, c} {
		deadline := time.Now().Add(20 * time.Second)
		for n.dht.NumNodes() == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 5 {
		digest := digestOf(randomBytes(64, uint64(100+i)))
		before := b.dht.Stats().SuccessfulOutboundAnnouncePeerQueries
		select {
		case <-b.AnnounceFlight(digest):
		case <-time.After(30 * time.Second):
			t.Fatal("AnnounceFlight did not finish in 30 s")
		}
		if got := b.dht.Stats().SuccessfulOutboundAnnouncePeerQueries; got <= before {
			t.Fatalf("flight %d: AnnounceFlight's channel closed with %d announce_peer answered (%d before); want more", i, got, before)
		}
		// The DHT node stores an announce just after answering it (the
		// library adds the peer in a goroutine): look for a moment.
		var f Found
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			var err error
			f, err = c.Lookup(ctx, digest)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(f.Flights, b.HTTPAddr()) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !slices.Contains(f.Flights, b.HTTPAddr()) {
			t.Fatalf("flight %d: a lookup after B's announce finished found %v; want B (%s)", i, f.Flights, b.HTTPAddr())
		}
	}
}
