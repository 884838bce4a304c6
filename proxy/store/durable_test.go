package store

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// stopUnclean stops s as a power loss would, as far as the index and the
// sync loop go: nothing pending is synced and no not-yet-synced mark is
// cleared. (The kernel's page cache survives, so the test damages the files
// a power loss would have left damaged itself.)
func stopUnclean(t *testing.T, s *Store) {
	t.Helper()
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.bg.Wait()
		if err := s.db.Close(); err != nil {
			t.Fatalf("closing the index: %v", err)
		}
		s.lock.Close()
	})
}

// countHashes counts the files Open hashes while the test runs.
func countHashes(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	checkUnsynced = func(path string, d Digest) (int64, error) {
		n.Add(1)
		return checkBlobFile(path, d)
	}
	t.Cleanup(func() { checkUnsynced = checkBlobFile })
	return &n
}

// A commit is not fsynced one by one any more (issue 13: the fsyncs were a
// quarter of pkgswarm's CPU on a cold apt run). What a power loss may leave
// of a blob committed since the last batch sync must never be served: the
// next Open hashes exactly those blobs and drops the damaged ones.
func TestUnsyncedBlobsAreHashedAfterAnUncleanStop(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir, SyncDelay: time.Hour})
	synced := putBlob(t, s, []byte("committed and synced before the stop"))
	if err := s.syncPending(); err != nil {
		t.Fatal(err)
	}
	torn := putBlob(t, s, []byte("committed; its data never reached the disk"))
	whole := putBlob(t, s, []byte("committed; its data reached the disk"))
	stopUnclean(t, s)

	// The power loss: the torn blob's data blocks were never written.
	p := s.BlobPath(torn)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	hashed := countHashes(t)
	s2 := openTest(t, Options{Dir: dir, SyncDelay: time.Hour})
	if got := hashed.Load(); got != 2 {
		t.Errorf("Open hashed %d files, want the 2 committed since the last sync", got)
	}
	if s2.HasBlob(torn) {
		t.Fatal("a blob torn by the power loss is still held")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the torn blob's file is still there: %v", err)
	}
	assertBytes(t, "the whole unsynced blob", readBlob(t, s2, whole), []byte("committed; its data reached the disk"))
	assertBytes(t, "the synced blob", readBlob(t, s2, synced), []byte("committed and synced before the stop"))
	if n, _ := s2.Usage(); n != 2 {
		t.Errorf("the store counts %d blobs, want 2", n)
	}
	// The marks were cleared: a clean stop and another Open hash nothing.
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	hashed.Store(0)
	openTest(t, Options{Dir: dir})
	if got := hashed.Load(); got != 0 {
		t.Errorf("after a clean stop Open hashed %d files, want 0", got)
	}
}

// A file in the blob directory that the index does not know (renamed into
// place just before the stop, or put there by hand) is hashed before it is
// adopted: its name alone does not make it a blob.
func TestUnknownBlobFileIsHashedBeforeItIsAdopted(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good := []byte("a blob whose record was never written")
	bad := DigestOf([]byte("what the name promises"))
	for d, content := range map[Digest][]byte{DigestOf(good): good, bad: []byte("something else")} {
		p := s.BlobPath(d)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openTest(t, Options{Dir: dir})
	if s2.HasBlob(bad) {
		t.Fatal("a file whose bytes do not hash to its name was adopted")
	}
	assertBytes(t, "the adopted blob", readBlob(t, s2, DigestOf(good)), good)
}

// Commits close together are made durable by one sync, soon after, without
// Close; what is committed after Close started is synced by Close.
func TestCommitsAreSyncedInBatches(t *testing.T) {
	var batches atomic.Int64
	syncBatch = func(s *Store, b map[Digest]int64) error {
		batches.Add(1)
		return syncBlobs(s, b)
	}
	t.Cleanup(func() { syncBatch = syncBlobs })
	dir := t.TempDir()
	s := openTest(t, Options{Dir: dir, SyncDelay: 200 * time.Millisecond})
	const n = 20
	for i := range n {
		putBlob(t, s, []byte{byte(i), 'x'})
	}
	waitUntil(t, "the commits are synced", func() bool {
		keys, err := s.unsyncedKeys()
		return err == nil && len(keys) == 0
	})
	if got := batches.Load(); got < 1 || got >= n {
		t.Errorf("%d commits were synced in %d batches, want fewer batches than commits", n, got)
	}

	last := putBlob(t, s, []byte("committed just before Close"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	hashed := countHashes(t)
	s2 := openTest(t, Options{Dir: dir})
	if got := hashed.Load(); got != 0 {
		t.Errorf("Close left %d blobs unsynced, want 0", got)
	}
	if !s2.HasBlob(last) {
		t.Fatal("the blob committed just before Close is gone")
	}
}

// With a negative SyncDelay every commit is durable when Commit returns: no
// mark is left for the next Open.
func TestSyncEveryCommit(t *testing.T) {
	s := openTest(t, Options{SyncDelay: -1})
	putBlob(t, s, []byte("durable at once"))
	keys, err := s.unsyncedKeys()
	if err != nil || len(keys) != 0 {
		t.Fatalf("unsynced marks after a synced commit: %d, %v", len(keys), err)
	}
}
