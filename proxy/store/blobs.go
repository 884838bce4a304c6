package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// BlobPath returns where the blob file for d lives (whether or not it exists).
func (s *Store) BlobPath(d Digest) string {
	h := d.String()
	return filepath.Join(s.blobDir, h[:2], h)
}

// OpenBlob opens the verified blob d for reading and returns it with its size.
// The caller closes the file. The file stays readable even if the blob is evicted
// while it is open. An error wraps ErrNotFound when the store does not hold d.
// The access is recorded for LRU in memory and written to the index in batches.
func (s *Store) OpenBlob(d Digest) (*os.File, int64, error) {
	if err := s.checkOpen(); err != nil {
		return nil, 0, fmt.Errorf("store: open blob %s: %w", d, err)
	}
	s.mu.RLock()
	e := s.blobs[d]
	s.mu.RUnlock()
	if e == nil {
		return nil, 0, fmt.Errorf("store: open blob %s: %w", d, ErrNotFound)
	}
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind the store's back (or evicted just now).
			s.forget(d, e)
			return nil, 0, fmt.Errorf("store: open blob %s: file missing: %w", d, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("store: open blob %s: %w", d, err)
	}
	s.touch(e)
	return f, e.size, nil
}

// touch moves e to the most-recently-used end.
func (s *Store) touch(e *blobEntry) {
	e.seq.Store(s.clock.Add(1))
	if now := time.Now().Unix(); e.access.Load() != now {
		e.access.Store(now)
	}
}

// forget drops e from the in-memory set if it is still the entry for d; its
// record is removed too.
func (s *Store) forget(d Digest, e *blobEntry) {
	s.mu.Lock()
	if s.blobs[d] == e {
		delete(s.blobs, d)
		s.bytes -= e.size
	}
	s.mu.Unlock()
	s.deleteRecords([]Digest{d})
}

// HasBlob reports whether the store holds the blob d.
func (s *Store) HasBlob(d Digest) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.blobs[d] != nil
}

// BlobInfo describes one stored blob.
type BlobInfo struct {
	Size       int64
	LastAccess time.Time // to the second; the commit time if never read
	Pinned     bool
}

// Stat returns what the store knows about blob d; the error wraps ErrNotFound
// when it does not hold d.
func (s *Store) Stat(d Digest) (BlobInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.blobs[d]
	if e == nil {
		return BlobInfo{}, fmt.Errorf("store: stat blob %s: %w", d, ErrNotFound)
	}
	return BlobInfo{Size: e.size, LastAccess: time.Unix(e.access.Load(), 0), Pinned: s.pinned[d] > 0}, nil
}

// DeleteBlob removes blob d. Open readers keep reading it. The error wraps
// ErrNotFound when the store does not hold d.
func (s *Store) DeleteBlob(d Digest) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	s.mu.Lock()
	e := s.blobs[d]
	if e == nil {
		s.mu.Unlock()
		return fmt.Errorf("store: delete blob %s: %w", d, ErrNotFound)
	}
	err := s.removeLocked(d, e)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.deleteRecords([]Digest{d})
}

// removeLocked unlinks d's file and drops it from memory. s.mu must be held.
func (s *Store) removeLocked(d Digest, e *blobEntry) error {
	if err := os.Remove(s.BlobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: delete blob %s: %w", d, err)
	}
	delete(s.blobs, d)
	s.bytes -= e.size
	return nil
}

func (s *Store) deleteRecords(ds []Digest) error {
	if len(ds) == 0 {
		return nil
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for _, d := range ds {
		b.del(blobKey(d))
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("store: delete %d blob records from the index: %w", len(ds), err)
	}
	return nil
}

// Walk calls fn once for each blob held when Walk starts, in digest order, with
// no lock held (fn may call the Store). A blob deleted during the walk may still
// be reported. If fn returns an error, Walk stops and returns it.
func (s *Store) Walk(fn func(d Digest, size int64) error) error {
	type item struct {
		d    Digest
		size int64
	}
	s.mu.RLock()
	items := make([]item, 0, len(s.blobs))
	for d, e := range s.blobs {
		items = append(items, item{d, e.size})
	}
	s.mu.RUnlock()
	slices.SortFunc(items, func(a, b item) int { return bytes.Compare(a.d[:], b.d[:]) })
	for _, it := range items {
		if err := fn(it.d, it.size); err != nil {
			return err
		}
	}
	return nil
}

// Usage returns how many blobs the store holds and their total size in bytes.
func (s *Store) Usage() (blobs int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.blobs), s.bytes
}

// Subscribe registers fn to be called after each successful Commit (including a
// commit of a blob the store already held), in the committing goroutine, after
// the blob is readable. fn must not block long.
func (s *Store) Subscribe(fn func(d Digest, size int64)) {
	s.subMu.Lock()
	s.subs = append(s.subs, fn)
	s.subMu.Unlock()
}

func (s *Store) notify(d Digest, size int64) {
	s.subMu.RLock()
	subs := s.subs
	s.subMu.RUnlock()
	for _, fn := range subs {
		fn(d, size)
	}
}

// Evict deletes blobs until their total size is at most target bytes: unpinned
// blobs first, least recently used first, then pinned blobs in the same order.
// It returns the bytes freed. Commit calls it when the store exceeds MaxBytes.
func (s *Store) Evict(target int64) (freed int64, err error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	type cand struct {
		d      Digest
		e      *blobEntry
		seq    uint64
		pinned bool
	}
	s.mu.RLock()
	if s.bytes <= target {
		s.mu.RUnlock()
		return 0, nil
	}
	cands := make([]cand, 0, len(s.blobs))
	for d, e := range s.blobs {
		cands = append(cands, cand{d, e, e.seq.Load(), s.pinned[d] > 0})
	}
	s.mu.RUnlock()
	slices.SortFunc(cands, func(a, b cand) int {
		if a.pinned != b.pinned {
			if a.pinned {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.seq, b.seq)
	})
	var gone []Digest
	var pinnedGone int
	for _, c := range cands {
		s.mu.Lock()
		if s.bytes <= target {
			s.mu.Unlock()
			break
		}
		if s.blobs[c.d] != c.e {
			s.mu.Unlock()
			continue
		}
		rerr := s.removeLocked(c.d, c.e)
		s.mu.Unlock()
		if rerr != nil {
			err = rerr
			break
		}
		freed += c.e.size
		gone = append(gone, c.d)
		if c.pinned {
			pinnedGone++
		}
	}
	if derr := s.deleteRecords(gone); derr != nil && err == nil {
		err = derr
	}
	if len(gone) > 0 {
		n, b := s.Usage()
		s.log.Info("evicted blobs", "evicted", len(gone), "pinned_evicted", pinnedGone, "freed_bytes", freed, "blobs", n, "bytes", b, "target_bytes", target)
	}
	if err != nil {
		return freed, fmt.Errorf("store: evict to %d bytes: %w", target, err)
	}
	return freed, nil
}

func (s *Store) autoEvict() {
	if _, err := s.Evict(s.max - s.max/100*(100-evictLowWaterPercent)); err != nil {
		s.log.Warn("automatic eviction failed; the store stays over its size bound", "max_bytes", s.max, "err", err)
	}
}

// pinChunk is how many digests one pin-set chunk value holds (64 KiB).
const pinChunk = 2048

// Pin replaces the pin set called set with ds. Pinned blobs (in any set) are
// evicted only after every unpinned blob. Digests the store does not hold may be
// pinned; they are protected once committed. An empty ds removes the set.
func (s *Store) Pin(set string, ds []Digest) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if set == "" || len(set) > 1024 {
		return fmt.Errorf("store: pin: set name must be 1 to 1024 bytes, got %d", len(set))
	}
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b Digest) int { return bytes.Compare(a[:], b[:]) })
	ds = slices.Compact(ds)

	s.evictMu.Lock() // keep Evict from seeing a half-replaced set
	defer s.evictMu.Unlock()
	s.mu.RLock()
	old, had := s.pinGen[set]
	s.mu.RUnlock()

	// Crash-consistent replacement: write the new chunks under a new generation,
	// then switch the header, then delete the old chunks. Open reads only the
	// generation the header names and deletes any other.
	h := pinHeader{Gen: old.Gen + 1, Count: uint64(len(ds))}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for i := 0; i < len(ds); i += pinChunk {
		chunk := ds[i:min(i+pinChunk, len(ds))]
		v := make([]byte, 0, len(chunk)*len(Digest{}))
		for _, d := range chunk {
			v = append(v, d[:]...)
		}
		b.set(pinDataKey(set, h.Gen, uint32(i/pinChunk)), v)
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("store: pin set %q (%d digests): write: %w", set, len(ds), err)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		if len(ds) == 0 {
			return txn.Delete(pinHeadKey(set))
		}
		return txn.Set(pinHeadKey(set), encodePinHeader(h))
	})
	if err != nil {
		return fmt.Errorf("store: pin set %q: write header: %w", set, err)
	}
	if had {
		if err := s.deletePinChunks(set, old.Gen); err != nil {
			s.log.Warn("removing an old pin set generation failed; the next Open removes it", "set", set, "err", err)
		}
	}
	if len(ds) == 0 {
		// The header is gone: the chunks of the new (empty) generation are none.
		h = pinHeader{}
	}

	s.mu.Lock()
	for _, d := range s.pinSets[set] {
		if s.pinned[d]--; s.pinned[d] <= 0 {
			delete(s.pinned, d)
		}
	}
	if len(ds) == 0 {
		delete(s.pinSets, set)
		delete(s.pinGen, set)
	} else {
		s.pinSets[set] = ds
		s.pinGen[set] = h
		for _, d := range ds {
			s.pinned[d]++
		}
	}
	s.mu.Unlock()
	return nil
}

// PinSets returns the names of the current pin sets and their sizes.
func (s *Store) PinSets() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.pinSets))
	for k, v := range s.pinSets {
		out[k] = len(v)
	}
	return out
}

func pinHeadKey(set string) []byte { return append([]byte{prefixPinHead}, set...) }

func pinDataPrefix(set string) []byte {
	k := append([]byte{prefixPinData}, set...)
	return append(k, 0)
}

func pinDataKey(set string, gen uint64, chunk uint32) []byte {
	k := pinDataPrefix(set)
	k = binary.BigEndian.AppendUint64(k, gen)
	return binary.BigEndian.AppendUint32(k, chunk)
}

func (s *Store) deletePinChunks(set string, gen uint64) error {
	prefix := binary.BigEndian.AppendUint64(pinDataPrefix(set), gen)
	keys, err := s.keysWithPrefix(prefix)
	if err != nil {
		return err
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for _, k := range keys {
		b.del(k)
	}
	return b.flush()
}

func (s *Store) keysWithPrefix(prefix []byte) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	return keys, err
}

// loadPins reads every pin set's current generation and deletes chunks of any
// other generation (left by a crash during Pin).
func (s *Store) loadPins() error {
	heads := make(map[string]pinHeader)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixPinHead}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			set := string(it.Item().Key()[1:])
			err := it.Item().Value(func(v []byte) error {
				h, err := decodePinHeader(v)
				if err != nil {
					s.log.Warn("dropping unreadable pin set header; the set is unpinned until pinned again", "set", set, "err", err)
					return nil
				}
				heads[set] = h
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: open: read pin sets: %w", err)
	}
	var stale [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixPinData}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			// 'p' set 0 gen(8) chunk(4)
			if len(k) < 1+1+12 || k[len(k)-13] != 0 {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			set := string(k[1 : len(k)-13])
			gen := binary.BigEndian.Uint64(k[len(k)-12:])
			h, ok := heads[set]
			if !ok || h.Gen != gen {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			err := it.Item().Value(func(v []byte) error {
				ds, err := decodePinChunk(v)
				if err != nil {
					s.log.Warn("dropping unreadable pin chunk", "set", set, "err", err)
					return nil
				}
				s.pinSets[set] = append(s.pinSets[set], ds...)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: open: read pin sets: %w", err)
	}
	for set, h := range heads {
		s.pinGen[set] = h
		if got := uint64(len(s.pinSets[set])); got != h.Count {
			s.log.Warn("pin set is incomplete in the index; it protects fewer blobs until pinned again", "set", set, "want", h.Count, "got", got)
		}
		for _, d := range s.pinSets[set] {
			s.pinned[d]++
		}
	}
	if len(stale) > 0 {
		b := badgerBatch{wb: s.db.NewWriteBatch()}
		defer b.wb.Cancel()
		for _, k := range stale {
			b.del(k)
		}
		if err := b.flush(); err != nil {
			return fmt.Errorf("store: open: remove stale pin chunks: %w", err)
		}
	}
	return nil
}

// commitBlob moves the temporary file tmp, whose content hashes to d, into
// place, and records it as not yet synced unless every commit syncs. If the store already holds d, tmp is removed instead. It reports
// whether the store is now over its size bound.
func (s *Store) commitBlob(tmp *os.File, d Digest, size int64) (over bool, err error) {
	if err := s.checkOpen(); err != nil {
		return false, fmt.Errorf("store: commit blob %s: %w", d, err)
	}
	dst := s.BlobPath(d)
	s.mu.Lock()
	for {
		if e := s.blobs[d]; e != nil {
			if _, err := os.Stat(dst); err == nil {
				s.mu.Unlock()
				s.touch(e)
				os.Remove(tmp.Name())
				return false, nil
			}
			// The file vanished behind the store's back: replace it.
			delete(s.blobs, d)
			s.bytes -= e.size
		}
		ch := s.committing[d]
		if ch == nil {
			break
		}
		// The same blob is being committed by another download: wait,
		// then look again.
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	// The rename and the fsyncs run without the lock (every lookup takes
	// it): d is claimed meanwhile, and neither eviction nor deletion
	// touches a file whose blob is not in s.blobs.
	ch := make(chan struct{})
	s.committing[d] = ch
	s.mu.Unlock()
	rerr := s.renameIntoPlace(tmp, dst, s.durable.delay < 0)
	s.mu.Lock()
	delete(s.committing, d)
	close(ch)
	if rerr != nil {
		s.mu.Unlock()
		return false, fmt.Errorf("store: commit blob %s: %w", d, rerr)
	}
	e := &blobEntry{size: size}
	s.touch(e)
	seq := e.seq.Load()
	s.blobs[d] = e
	s.bytes += size
	over = s.max > 0 && s.bytes > s.max
	s.mu.Unlock()

	deferred := s.durable.delay >= 0
	r := blobRecord{Size: size, Seq: seq, Access: time.Unix(e.access.Load(), 0)}
	err = s.db.Update(func(txn *badger.Txn) error {
		if deferred {
			if err := txn.Set(syncKey(d), nil); err != nil {
				return err
			}
		}
		return txn.Set(blobKey(d), encodeBlobRecord(r))
	})
	if err != nil {
		// The file is in place and will be adopted (hashed) by the next Open.
		s.log.Warn("writing a blob record to the index failed", "digest", d, "err", err)
	} else {
		e.persisted.CompareAndSwap(0, seq)
	}
	if deferred {
		s.durable.add(d, size)
	}
	return over, nil
}

// makeShards makes the 256 shard directories of blobDir that are missing
// (00 to ff), and fsyncs blobDir when it made any. Open calls it, so that
// no commit makes a directory: on a file system where making an inode is
// slow (ext4 without a journal, right after many deletions: about 0.4
// ms each, BenchmarkOpenNew), a fresh store's first downloads would else make about
// one directory per file.
func makeShards(blobDir string) error {
	made := false
	for i := range 256 {
		p := filepath.Join(blobDir, hex.EncodeToString([]byte{byte(i)}))
		switch err := os.Mkdir(p, 0o755); {
		case err == nil:
			made = true
		case !errors.Is(err, fs.ErrExist):
			return fmt.Errorf("make the blob directory %s: %w (check free space and permissions)", p, err)
		}
	}
	if made {
		return syncDir(blobDir)
	}
	return nil
}

// renameIntoPlace makes tmp read-only and renames it to dst. With sync it
// fsyncs the directories involved, so the blob survives a crash once this
// returns; without, the next batch sync does (syncPending).
func (s *Store) renameIntoPlace(tmp *os.File, dst string, sync bool) error {
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	shard := filepath.Dir(dst)
	err := os.Rename(tmp.Name(), dst)
	if errors.Is(err, fs.ErrNotExist) {
		// Open made every shard; this one was removed behind the store's back.
		if err := os.Mkdir(shard, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if sync {
			if err := syncDir(s.blobDir); err != nil {
				return err
			}
		}
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return err
	}
	if !sync {
		return nil
	}
	return syncDir(shard)
}

// syncDir fsyncs a directory (a variable: tests stall it).
var syncDir = fsyncPath

// fsyncPath opens the file or directory p and fsyncs it. An error opening
// it is os.Open's (errors.Is(err, fs.ErrNotExist) holds for a missing one).
func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// Verify re-hashes every blob and deletes each one whose bytes do not hash to its
// name or whose size does not match the index (disk corruption, or a file edited
// behind the store's back). It returns the digests it deleted. progress, if not
// nil, is called after each blob with the bytes hashed so far and the total. It
// stops early, returning ctx's error, when ctx ends.
func (s *Store) Verify(ctx context.Context, progress func(done, total int64)) (bad []Digest, err error) {
	type item struct {
		d    Digest
		size int64
	}
	var items []item
	var total, done int64
	if err := s.Walk(func(d Digest, size int64) error {
		items = append(items, item{d, size})
		total += size
		return nil
	}); err != nil {
		return nil, err
	}
	buf := make([]byte, 256<<10)
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return bad, fmt.Errorf("store: verify: stopped after %d of %d bytes: %w", done, total, err)
		}
		ok, why, err := s.verifyOne(it.d, it.size, buf)
		if err != nil {
			return bad, err
		}
		if !ok {
			s.log.Warn("deleting corrupt blob", "digest", it.d, "path", s.BlobPath(it.d), "reason", why)
			if err := s.DeleteBlob(it.d); err != nil && !IsNotFound(err) {
				return bad, err
			}
			bad = append(bad, it.d)
		}
		done += it.size
		if progress != nil {
			progress(done, total)
		}
	}
	return bad, nil
}

func (s *Store) verifyOne(d Digest, size int64, buf []byte) (ok bool, why string, err error) {
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, "", nil // deleted meanwhile
		}
		return false, "", fmt.Errorf("store: verify blob %s: %w", d, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return false, "", fmt.Errorf("store: verify blob %s: read %s: %w", d, f.Name(), err)
	}
	if n != size {
		return false, fmt.Sprintf("size %d, index says %d", n, size), nil
	}
	if got := Digest(h.Sum(nil)); got != d {
		return false, "content hashes to " + got.String(), nil
	}
	return true, "", nil
}
