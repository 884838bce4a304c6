package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// syncBatchBytes starts a batch sync before the delay is up once this many
// bytes wait: it bounds what the next Open may have to hash after a power
// loss, and the dirty pages the store leaves to the kernel.
const syncBatchBytes = 256 << 20

// syncState is the set of committed blobs that are not yet known to be on
// disk. A commit adds its blob (after writing its syncKey to the index); a
// batch sync takes the set, syncs the file system, and deletes their keys.
type syncState struct {
	delay time.Duration // < 0: every commit syncs itself, the set stays empty

	mu      sync.Mutex
	pending map[Digest]int64
	bytes   int64
	kick    chan struct{} // cap 1: the set became non-empty
	full    chan struct{} // cap 1: the set holds syncBatchBytes

	run sync.Mutex // serialises syncPending
}

func newSyncState(delay time.Duration) syncState {
	if delay == 0 {
		delay = DefaultSyncDelay
	}
	return syncState{delay: delay, pending: map[Digest]int64{}, kick: make(chan struct{}, 1), full: make(chan struct{}, 1)}
}

// add records d (size bytes) as committed and not yet synced.
func (st *syncState) add(d Digest, size int64) {
	st.mu.Lock()
	first := len(st.pending) == 0
	st.pending[d] = size
	st.bytes += size
	full := st.bytes >= syncBatchBytes
	st.mu.Unlock()
	if first {
		notify(st.kick)
	}
	if full {
		notify(st.full)
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// take empties the set and returns what it held.
func (st *syncState) take() map[Digest]int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.pending) == 0 {
		return nil
	}
	batch := st.pending
	st.pending = map[Digest]int64{}
	st.bytes = 0
	return batch
}

// putBack returns a batch whose sync failed to the set.
func (st *syncState) putBack(batch map[Digest]int64) {
	st.mu.Lock()
	for d, n := range batch {
		if _, ok := st.pending[d]; !ok {
			st.pending[d] = n
			st.bytes += n
		}
	}
	st.mu.Unlock()
	notify(st.kick)
}

// syncLoop syncs the committed blobs in batches: the first commit after a
// sync starts a wait of the sync delay (cut short when syncBatchBytes are
// waiting), then every blob committed meanwhile is synced at once. Close
// syncs what is left after the loop stopped.
func (s *Store) syncLoop() {
	defer s.bg.Done()
	st := &s.durable
	for {
		select {
		case <-s.stop:
			return
		case <-st.kick:
		}
		t := time.NewTimer(st.delay)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		case <-st.full:
			t.Stop()
		}
		if err := s.syncPending(); err != nil {
			s.log.Warn("making committed blobs durable failed; trying again, and the next Open hashes them if the machine stops first", "dir", s.blobDir, "err", err)
		}
	}
}

// syncPending makes every blob committed so far durable (an fsync of each
// and of each directory holding one), then deletes their not-yet-synced
// keys.
func (s *Store) syncPending() error {
	st := &s.durable
	st.run.Lock()
	defer st.run.Unlock()
	batch := st.take()
	if len(batch) == 0 {
		return nil
	}
	if err := syncBatch(s, batch); err != nil {
		st.putBack(batch)
		return fmt.Errorf("sync %d committed blobs under %s: %w", len(batch), s.blobDir, err)
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for d := range batch {
		b.del(syncKey(d))
	}
	if err := b.flush(); err != nil {
		// The blobs are durable; the next Open hashes them needlessly.
		return fmt.Errorf("clear the not-yet-synced marks of %d blobs: %w", len(batch), err)
	}
	return nil
}

// syncBlobs fsyncs each file of the batch and each directory holding one. A
// blob deleted meanwhile needs nothing. (Not syncfs: one call, but it writes
// out every process's dirty data on the file system, a second after
// pkgswarm's last commit; beside a benchmark's apt clients it doubled the
// pressure on the disk for no gain in time.)
func syncBlobs(s *Store, batch map[Digest]int64) error {
	dirs := map[string]bool{s.blobDir: true}
	for d := range batch {
		p := s.BlobPath(d)
		if err := fsyncPath(p); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		dirs[filepath.Dir(p)] = true
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// unsyncedKeys reads the digests committed but not known to be synced.
func (s *Store) unsyncedKeys() (map[Digest]struct{}, error) {
	out := map[Digest]struct{}{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixSync}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			var d Digest
			if len(k) != 1+len(d) {
				continue
			}
			copy(d[:], k[1:])
			out[d] = struct{}{}
		}
		return nil
	})
	return out, err
}

func syncKey(d Digest) []byte {
	k := make([]byte, 1+len(d))
	k[0] = prefixSync
	copy(k[1:], d[:])
	return k
}

// checkBlobFile hashes the file at path and returns its size if it hashes to
// d.
func checkBlobFile(path string, d Digest) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if got := Digest(h.Sum(nil)); got != d {
		return 0, fmt.Errorf("%s (%d bytes) hashes to %s: %w", path, n, got, ErrDigestMismatch)
	}
	return n, nil
}

// Variables, so that tests can count the batches and the files hashed.
var (
	syncBatch     = syncBlobs
	checkUnsynced = checkBlobFile
)
