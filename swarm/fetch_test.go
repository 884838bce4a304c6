package swarm

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The origin given as a web seed (BEP 19) contributes when the holders are
// slow.
func TestWebSeed(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(6<<20, 40)
	digest := blobs.put(t, data, "")
	size := int64(len(data))
	holder := newNode(t, blobs, withUploadRate(256<<10))
	if err := holder.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", nextIP()+":0")
	if err != nil {
		t.Fatal(err)
	}
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	})}
	go origin.Serve(ln)
	defer origin.Close()

	d := newNode(t, newDirBlobs(t), withBootstrap(holder.DHTAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := fetchAll(ctx, d, digest, size, "http://"+ln.Addr().String()+"/pool/main/x.deb")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("wrong bytes")
	}
	peers := d.Stats().Fetches[0].Peers
	t.Logf("bytes by peer: %v", peers)
	web := int64(0)
	for k, v := range peers {
		if strings.HasPrefix(k, "web ") {
			web += v
		}
	}
	if web == 0 {
		t.Error("the web seed contributed nothing")
	}
}

// Concurrent Fetches of one blob share one download; the scratch file is gone
// once the last reader closes; seeding the fetched blob needs no rehash.
func TestConcurrentFetchSharesAndCleansUp(t *testing.T) {
	blobs := newDirBlobs(t)
	data := randomBytes(3<<20, 41)
	digest := blobs.put(t, data, "")
	size := int64(len(data))
	holder := newNode(t, blobs)
	if err := holder.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	dBlobs := newDirBlobs(t)
	dDir := t.TempDir()
	d := newNodeDir(t, dDir, dBlobs, withBootstrap(holder.DHTAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := fetchAll(ctx, d, digest, size)
			if err == nil && !bytes.Equal(got, data) {
				err = os.ErrInvalid
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("fetch %d: %v", i, err)
		}
	}
	if n := len(d.Stats().Fetches); n > len(errs) || n < 1 {
		t.Errorf("%d fetch records", n)
	}
	// The scratch file goes scratchCloseGrace after the last reader closed.
	var ents []os.DirEntry
	var err error
	for deadline := time.Now().Add(scratchCloseGrace + 10*time.Second); ; {
		ents, err = os.ReadDir(filepath.Join(dDir, "scratch"))
		if err != nil || len(ents) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(ents) != 0 {
		t.Errorf("scratch dir after close: %v entries, %v", len(ents), err)
	}

	// The caller stores the verified blob and seeds it: the info bytes from
	// the fetch are reused, the blob is not read.
	dBlobs.put(t, data, "")
	before := dBlobs.opens.Load()
	if err := d.Seed(digest, size); err != nil {
		t.Fatal(err)
	}
	if after := dBlobs.opens.Load(); after != before {
		t.Errorf("seeding a fetched blob read it (%d → %d opens)", before, after)
	}
	m1, _ := holder.Magnet(digest, size)
	m2, _ := d.Magnet(digest, size)
	if m1[:60] != m2[:60] {
		t.Errorf("holder and fetcher seed different infohashes:\n%s\n%s", m1, m2)
	}
}
