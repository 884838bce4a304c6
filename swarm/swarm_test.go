package swarm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Three nodes on a private loopback DHT: A seeds, C and B know only A; B
// fetches by digest through the rendezvous key.
func TestFetchThroughDHT(t *testing.T) {
	blobsA := newDirBlobs(t)
	data := randomBytes(20<<20, 1)
	digest := blobsA.put(t, data, "")
	a := newNode(t, blobsA)
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	// C is a third DHT node; B's lookup may route through it.
	newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := fetchAll(ctx, b, digest, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(got) != digest {
		t.Fatalf("fetched bytes hash to %s, want %s", digestOf(got), digest)
	}
	st := b.Stats()
	if len(st.Fetches) != 1 {
		t.Fatalf("B records %d fetches, want 1", len(st.Fetches))
	}
	f := st.Fetches[0]
	aHost := peerHost(a.PeerAddr()).String()
	if f.Peers[aHost] == 0 {
		t.Errorf("B's fetch stats %v show no bytes from A (%s)", f.Peers, aHost)
	}
	if f.Finished.IsZero() || f.Err != "" {
		t.Errorf("fetch record: finished %v, err %q", f.Finished, f.Err)
	}
	if st.BytesDown < int64(len(data)) {
		t.Errorf("B downloaded %d bytes, want ≥ %d", st.BytesDown, len(data))
	}
}

// One holder, six downloaders at once: the downloaders find each other
// under the infohash and trade pieces, so most receive from several peers.
func TestManyDownloadersShare(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 360 MB")
	}
	blobs := newDirBlobs(t)
	data := randomBytes(60<<20, 2)
	digest := blobs.put(t, data, "")
	// The holder's upload is limited so that the swarm, not one link, carries
	// the bulk, as on a real LAN with one machine that has the file.
	seeder := newNode(t, blobs, withUploadRate(40<<20))
	if err := seeder.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	var ds []*Node
	for i := 0; i < 6; i++ {
		ds = append(ds, newNode(t, newDirBlobs(t), withBootstrap(seeder.DHTAddr())))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := fetchAll(ctx, d, digest, int64(len(data)))
			if err == nil && digestOf(got) != digest {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	multi := 0
	for i, d := range ds {
		if errs[i] != nil {
			t.Errorf("downloader %d: %v", i, errs[i])
			continue
		}
		f := d.Stats().Fetches[0]
		t.Logf("downloader %d (%s): bytes by peer %v", i, peerHost(d.PeerAddr()), f.Peers)
		if len(f.Peers) > 1 {
			multi++
		}
	}
	if multi < 4 {
		t.Errorf("only %d of %d downloaders received from more than one peer", multi, len(ds))
	}
}

func TestTooSmallAndOff(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(1000, 3)
	digest := blobs.put(t, data, "")
	n := newNode(t, blobs, func(c *Config) { c.MinSize = 4096 })
	if err := n.Seed(digest, int64(len(data))); !errors.Is(err, ErrTooSmall) {
		t.Errorf("Seed of a 1000-byte blob with MinSize 4096: %v, want ErrTooSmall", err)
	}
	if _, err := n.Fetch(context.Background(), digest, int64(len(data)), nil); !errors.Is(err, ErrTooSmall) {
		t.Errorf("Fetch of a 1000-byte blob with MinSize 4096: %v, want ErrTooSmall", err)
	}

	off, err := New(context.Background(), Config{Mode: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if err := off.Seed(digest, 1<<30); err != nil {
		t.Errorf("Seed with mode off: %v, want nil", err)
	}
	if _, err := off.Fetch(context.Background(), digest, 1<<30, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Fetch with mode off: %v, want ErrNotFound", err)
	}
	if _, err := New(context.Background(), Config{Mode: "everywhere"}); err == nil {
		t.Error("New accepted mode \"everywhere\"")
	}
}

// A digest nobody holds is reported as ErrNotFound, not a hang.
func TestFetchNotFound(t *testing.T) {
	a := newNode(t, newDirBlobs(t))
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	digest := digestOf([]byte("nobody has this"))
	_, err := b.Fetch(context.Background(), digest, 5<<20, nil)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Fetch of an unheld digest: %v, want ErrNotFound", err)
	}
	if fs := b.Stats().Fetches; len(fs) != 1 || fs[0].Err == "" {
		t.Errorf("fetch record %+v should carry the error", fs)
	}
}

// The DHT's traffic and the announces of seeded blobs are counted (Stats),
// for the per-node DHT figures a scale estimate starts from.
func TestDHTTrafficCounted(t *testing.T) {
	blobsA := newDirBlobs(t)
	data := randomBytes(2<<20, 3)
	digest := blobsA.put(t, data, "")
	a := newNode(t, blobsA)
	b := newNode(t, newDirBlobs(t), withBootstrap(a.DHTAddr()))
	if err := a.Seed(digest, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		sa, sb := a.Stats(), b.Stats()
		if sa.Announces >= 1 && sa.DHTPacketsIn > 0 && sa.DHTPacketsOut > 0 && sb.DHTPacketsIn > 0 && sb.DHTBytesOut > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: A %+v, B %+v", sa, sb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
