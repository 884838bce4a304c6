package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// Issue 13: a commit's fsyncs held the store's lock, which every lookup
// takes: on a cold apt run each of the 180 small files waited behind the
// fsyncs of the files before it. A lookup, and the commit of another blob,
// must not wait for a commit stalled in its fsync; a second commit of the
// same blob waits for the first and then finds it held.
func TestCommitFsyncDoesNotHoldLookups(t *testing.T) {
	s := openTest(t, Options{SyncDelay: -1}) // every commit fsyncs
	held := putBlob(t, s, []byte("held before the stall"))
	stalled := make(chan struct{})
	release := make(chan struct{})
	var first atomic.Bool
	syncDir = func(dir string) error {
		if first.CompareAndSwap(false, true) {
			close(stalled)
			<-release
		}
		return fsyncPath(dir)
	}
	t.Cleanup(func() { syncDir = fsyncPath })

	r := rand.New(rand.NewPCG(7, 7))
	slow := randBytes(r, 4096)
	done := make(chan error)
	go func() { done <- commitBytes(s, slow) }()
	<-stalled // the first commit is in its directory fsync

	answered := make(chan error)
	go func() {
		if !s.HasBlob(held) {
			answered <- errors.New("HasBlob of a held blob said no")
			return
		}
		answered <- commitBytes(s, []byte("another blob, committed meanwhile"))
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		close(release)
		<-done
		t.Fatal("a lookup and another commit waited for a commit stalled in its fsync")
	}
	if s.HasBlob(DigestOf(slow)) {
		t.Fatal("a blob is reported held before its commit finished")
	}
	// The same blob, committed again meanwhile: waits, then finds it held.
	again := make(chan error)
	go func() { again <- commitBytes(s, bytes.Clone(slow)) }()
	close(release)
	if err1, err2 := <-done, <-again; err1 != nil || err2 != nil || !s.HasBlob(DigestOf(slow)) {
		t.Fatalf("after both commits: %v, %v; held: %v", err1, err2, s.HasBlob(DigestOf(slow)))
	}
	if blobs, _ := s.Usage(); blobs != 3 {
		t.Fatalf("the store counts %d blobs, want 3", blobs)
	}
}

// commitBytes writes and commits b (for goroutines other than the test's).
func commitBytes(s *Store, b []byte) error {
	w, err := s.NewWriter()
	if err != nil {
		return err
	}
	defer w.Abort(nil)
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Commit(DigestOf(b))
}
