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
