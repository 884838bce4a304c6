package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrNotFound is wrapped by every error that means "the store does not hold it":
// a blob, URL entry, expectation, root or metadata key. Test with errors.Is or
// IsNotFound.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by operations on a closed Store.
var ErrClosed = errors.New("store: closed")

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// Options configures Open.
type Options struct {
	// Dir is the store's directory (required). It is created if missing and
	// holds blobs/, tmp/, index/ and a lock file.
	Dir string
	// MaxBytes bounds the total size of blobs. 0 means unbounded. When a commit
	// takes the store over the bound, least-recently-used blobs are evicted down
	// to 95% of it (see Evict).
	MaxBytes int64
	// InMemoryIndex keeps the badger index in memory (for tests). Blob files are
	// still written under Dir and found again by Open.
	InMemoryIndex bool
	// Logger receives the store's logs. nil means slog.Default().
	Logger *slog.Logger
	// SyncDelay is how long a committed blob may wait before it is made
	// durable: commits in that window are synced together by a background
	// loop, and Close syncs what is left. 0 means DefaultSyncDelay;
	// a negative value fsyncs every blob and its directory before Commit
	// returns. Either way a blob that was not synced when the process or the
	// machine stopped is hashed again by the next Open (see doc.go).
	SyncDelay time.Duration
}

// DefaultSyncDelay is Options.SyncDelay's default.
const DefaultSyncDelay = time.Second

// Key prefixes of the badger index. Each namespace is one byte followed by its key.
const (
	prefixURL     = 'u' // URL → URLEntry
	prefixExpect  = 'e' // path URL → Expect
	prefixRoot    = 'r' // repository → RootRecord
	prefixMeta    = 'm' // arbitrary key → caller's bytes
	prefixBlob    = 'b' // raw digest → blobRecord
	prefixPinHead = 'P' // set name → pinHeader
	prefixPinData = 'p' // set name, 0, gen (8 bytes BE), chunk (4 bytes BE) → digests
	prefixSync    = 'U' // raw digest → nothing: committed, not yet synced
)

const (
	accessFlushInterval = 30 * time.Second
	valueLogGCInterval  = 10 * time.Minute
	// evictLowWater is the fraction of MaxBytes an automatic eviction frees down
	// to, so that a full store does not evict on every commit.
	evictLowWaterPercent = 95
)

// Store is a content store rooted at one directory. It is safe for concurrent use.
type Store struct {
	dir     string
	blobDir string // dir/blobs/sha256
	tmpDir  string
	max     int64
	log     *slog.Logger
	db      *badger.DB
	lock    *os.File // flock'ed for the Store's lifetime

	clock atomic.Uint64 // LRU logical clock; last value handed out

	mu         sync.RWMutex // protects blobs, bytes, pinned, pinSets, committing; held while blob files are removed
	blobs      map[Digest]*blobEntry
	committing map[Digest]chan struct{} // blobs being renamed into place (closed when done)
	bytes      int64
	pinned     map[Digest]int32     // how many pin sets name each digest
	pinSets    map[string][]Digest  // current digests of every pin set
	pinGen     map[string]pinHeader // current header of every pin set

	evictMu sync.Mutex // serialises Evict runs

	subMu sync.RWMutex // protects subs
	subs  []func(Digest, int64)

	durable syncState

	closeOnce sync.Once
	closed    atomic.Bool
	stop      chan struct{}  // closed by Close to stop background loops
	bg        sync.WaitGroup // background loops
}

// blobEntry is the in-memory state of one blob file.
type blobEntry struct {
	size      int64
	seq       atomic.Uint64 // LRU position: larger is more recent
	access    atomic.Int64  // unix seconds of the last access
	persisted atomic.Uint64 // seq last written to the index
}

// Open opens (creating if needed) the store in opts.Dir. It takes an exclusive
// lock on the directory, opens the index with small memory settings, deletes
// every leftover temporary file, and reconciles the index with the blob files.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: open: Options.Dir is required")
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("store: open %s: MaxBytes %d is negative; use 0 for unbounded", opts.Dir, opts.MaxBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")
	s := &Store{
		dir:        opts.Dir,
		blobDir:    filepath.Join(opts.Dir, "blobs", "sha256"),
		tmpDir:     filepath.Join(opts.Dir, "tmp"),
		max:        opts.MaxBytes,
		log:        log,
		blobs:      make(map[Digest]*blobEntry),
		committing: map[Digest]chan struct{}{},
		pinned:     make(map[Digest]int32),
		pinSets:    make(map[string][]Digest),
		pinGen:     make(map[string]pinHeader),
		stop:       make(chan struct{}),
		durable:    newSyncState(opts.SyncDelay),
	}
	for _, d := range []string{s.dir, s.blobDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store: open: create directory: %w", err)
		}
	}
	lock, err := lockDir(filepath.Join(s.dir, "lock"))
	if err != nil {
		return nil, err
	}
	s.lock = lock
	ok := false
	defer func() {
		if !ok {
			if s.db != nil {
				s.db.Close()
			}
			lock.Close()
		}
	}()

	if err := makeShards(s.blobDir); err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	// Nothing under tmp/ can be a complete, verified blob: commits rename out of it.
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("store: open: remove leftover temporary files in %s: %w", s.tmpDir, err)
	}
	if err := os.MkdirAll(s.tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: open: create %s: %w", s.tmpDir, err)
	}

	if !opts.InMemoryIndex {
		if err := removeEmptyIndexFiles(filepath.Join(s.dir, "index"), log); err != nil {
			return nil, fmt.Errorf("store: open: %w", err)
		}
	}
	db, err := badger.Open(badgerOptions(filepath.Join(s.dir, "index"), opts.InMemoryIndex, log))
	if err != nil {
		return nil, fmt.Errorf("store: open index in %s: %w (is another pkgswarm using this directory, or is the index damaged? moving index/ aside rebuilds blob records but loses URL and root records)", filepath.Join(s.dir, "index"), err)
	}
	s.db = db
	if err := s.loadBlobs(); err != nil {
		return nil, err
	}
	if err := s.loadPins(); err != nil {
		return nil, err
	}
	ok = true

	s.bg.Add(1)
	go s.background(!opts.InMemoryIndex)
	if s.durable.delay > 0 {
		s.bg.Add(1)
		go s.syncLoop()
	}
	n, b := s.Usage()
	log.Info("content store open", "dir", s.dir, "blobs", n, "bytes", b, "max_bytes", s.max)
	if s.max > 0 && b > s.max {
		s.autoEvict()
	}
	return s, nil
}

// removeEmptyIndexFiles removes the empty memtable and value-log files of the
// badger index in dir: a kill between badger's creation of such a file and its
// first write leaves it empty, and badger.Open then refuses the directory
// (z.NewFile, dgraph-io/badger#2207). An empty file holds no entry, and no
// value pointer can point into it.
func removeEmptyIndexFiles(dir string, log *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext != ".mem" && ext != ".vlog" || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() != 0 {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the empty index file %s that an unclean stop left: %w", p, err)
		}
		log.Warn("removed an empty index file an unclean stop left", "path", p)
	}
	return nil
}

// badgerOptions keeps badger small: its defaults reserve hundreds of megabytes of
// memtables and block cache, while the index holds only small values.
func badgerOptions(dir string, inMemory bool, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMetricsEnabled(false).
		WithDetectConflicts(false).
		// Uncompressed tables are read straight from their mmap: no block
		// decompression garbage per lookup and no block cache needed.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(2 << 20).
		WithNumMemtables(2).
		WithMemTableSize(4 << 20).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(10).
		WithNumCompactors(2).
		WithValueLogFileSize(32 << 20).
		WithValueThreshold(1 << 10).
		WithNumGoroutines(2)
	if inMemory {
		// No value log in memory: every value must stay in the LSM tree.
		// badger checks len(value) > threshold when a value is set but
		// len(value) < threshold when it is written (and indexes missing value
		// pointers, a panic, at equality): hence the +1.
		o = o.WithDir("").WithValueDir("").WithInMemory(true).WithValueThreshold(maxValueLen + 1)
	}
	return o
}

// badgerLogger forwards badger's logs to slog; badger's info chatter goes to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("index: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("index: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any)  { b.debug(f, a) }
func (b badgerLogger) Debugf(f string, a ...any) { b.debug(f, a) }

// debug logs at debug, formatting nothing when debug is off: badger logs a
// line per index write batch.
func (b badgerLogger) debug(f string, a []any) {
	if b.l.Enabled(context.Background(), slog.LevelDebug) {
		b.l.Debug("index: " + trimNL(fmt.Sprintf(f, a...)))
	}
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w (another pkgswarm process is using this store directory)", path, err)
	}
	return f, nil
}

// loadBlobs reads the blob records from the index, then reconciles them with the
// files: the files are the truth.
func (s *Store) loadBlobs() error {
	records := make(map[Digest]blobRecord)
	var maxSeq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBlob}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+len(Digest{}) {
				s.log.Warn("ignoring malformed blob key in index", "key_len", len(k))
				continue
			}
			var d Digest
			copy(d[:], k[1:])
			err := item.Value(func(v []byte) error {
				r, err := decodeBlobRecord(v)
				if err != nil {
					s.log.Warn("ignoring unreadable blob record; the file is adopted as new", "digest", d, "err", err)
					return nil
				}
				records[d] = r
				maxSeq = max(maxSeq, r.Seq)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: open: read blob records: %w", err)
	}
	s.clock.Store(maxSeq)
	unsynced, err := s.unsyncedKeys()
	if err != nil {
		return fmt.Errorf("store: open: read the blobs not yet synced: %w", err)
	}

	adopt := badgerBatch{wb: s.db.NewWriteBatch()}
	defer adopt.wb.Cancel()
	shards, err := os.ReadDir(s.blobDir)
	if err != nil {
		return fmt.Errorf("store: open: list %s: %w", s.blobDir, err)
	}
	now := time.Now()
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		shardPath := filepath.Join(s.blobDir, sh.Name())
		ents, err := os.ReadDir(shardPath)
		if err != nil {
			return fmt.Errorf("store: open: list %s: %w", shardPath, err)
		}
		for _, e := range ents {
			d, err := ParseDigest(e.Name())
			if err != nil || d.String()[:2] != sh.Name() || !e.Type().IsRegular() {
				s.log.Warn("ignoring stray file in blob directory", "path", filepath.Join(shardPath, e.Name()))
				continue
			}
			if _, dup := s.blobs[d]; dup { // upper- and lower-case names of one digest
				s.log.Warn("ignoring duplicate blob file", "path", filepath.Join(shardPath, e.Name()))
				continue
			}
			r, ok := records[d]
			if _, pending := unsynced[d]; pending || !ok {
				// Committed but not known to be synced when the store
				// last stopped (or renamed into place just before the
				// index record was written): a power loss may have left
				// it short or zeroed. Hash it before it is served again.
				path := filepath.Join(shardPath, e.Name())
				size, err := checkUnsynced(path, d)
				if err != nil {
					s.log.Warn("dropping a blob committed just before an unclean stop: it does not hash to its name", "path", path, "err", err)
					if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
						return fmt.Errorf("store: open: remove damaged blob %s: %w", path, rerr)
					}
					continue // its record, if any, is deleted below
				}
				if !ok {
					r = blobRecord{Size: size, Seq: s.clock.Add(1), Access: now}
					adopt.set(blobKey(d), encodeBlobRecord(r))
				}
			}
			delete(records, d)
			be := &blobEntry{size: r.Size}
			be.seq.Store(r.Seq)
			be.persisted.Store(r.Seq)
			be.access.Store(r.Access.Unix())
			s.blobs[d] = be
			s.bytes += r.Size
		}
	}
	for d := range records { // a record whose file is gone
		adopt.del(blobKey(d))
	}
	for d := range unsynced { // checked above, or gone
		adopt.del(syncKey(d))
	}
	if err := adopt.flush(); err != nil {
		return fmt.Errorf("store: open: update blob records: %w", err)
	}
	return nil
}

// badgerBatch wraps a WriteBatch so that the first error is kept.
type badgerBatch struct {
	wb  *badger.WriteBatch
	err error
	n   int
}

func (b *badgerBatch) set(k, v []byte) {
	if b.err == nil {
		b.err = b.wb.Set(k, v)
		b.n++
	}
}

func (b *badgerBatch) del(k []byte) {
	if b.err == nil {
		b.err = b.wb.Delete(k)
		b.n++
	}
}

func (b *badgerBatch) flush() error {
	if b.err != nil {
		return b.err
	}
	return b.wb.Flush()
}

func blobKey(d Digest) []byte {
	k := make([]byte, 1+len(d))
	k[0] = prefixBlob
	copy(k[1:], d[:])
	return k
}

// background runs the periodic work: writing coalesced access records and, for an
// on-disk index, value-log garbage collection.
func (s *Store) background(gc bool) {
	defer s.bg.Done()
	flush := time.NewTicker(accessFlushInterval)
	defer flush.Stop()
	var gcC <-chan time.Time
	if gc {
		t := time.NewTicker(valueLogGCInterval)
		defer t.Stop()
		gcC = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-flush.C:
			if err := s.flushAccess(); err != nil {
				s.log.Warn("writing blob access times to the index failed; LRU order may be stale after a restart", "err", err)
			}
		case <-gcC:
			s.runValueLogGC()
		}
	}
}

func (s *Store) runValueLogGC() {
	for i := 0; i < 16; i++ { // bounded: each round rewrites at most one file
		if err := s.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("index value-log garbage collection failed", "err", err)
			}
			return
		}
	}
}

// flushAccess writes the blob records whose LRU position moved since they were
// last written.
func (s *Store) flushAccess() error {
	type dirty struct {
		d   Digest
		e   *blobEntry
		seq uint64
	}
	var todo []dirty
	s.mu.RLock()
	for d, e := range s.blobs {
		if seq := e.seq.Load(); seq != e.persisted.Load() {
			todo = append(todo, dirty{d, e, seq})
		}
	}
	s.mu.RUnlock()
	if len(todo) == 0 {
		return nil
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for _, t := range todo {
		r := blobRecord{Size: t.e.size, Seq: t.seq, Access: time.Unix(t.e.access.Load(), 0)}
		b.set(blobKey(t.d), encodeBlobRecord(r))
	}
	if err := b.flush(); err != nil {
		return err
	}
	var stale [][]byte
	s.mu.RLock()
	for _, t := range todo {
		switch cur := s.blobs[t.d]; {
		case cur == t.e:
			t.e.persisted.Store(t.seq)
		case cur == nil:
			// Deleted while this flush ran: its record may have been written
			// back by the batch above.
			stale = append(stale, blobKey(t.d))
		default:
			// Deleted and committed again: make the next flush rewrite the
			// new entry's record over the one written above.
			cur.persisted.Store(0)
		}
	}
	s.mu.RUnlock()
	if len(stale) > 0 {
		b := badgerBatch{wb: s.db.NewWriteBatch()}
		defer b.wb.Cancel()
		for _, k := range stale {
			b.del(k)
		}
		return b.flush()
	}
	return nil
}

// Close writes pending access records and closes the index. Writers still open
// cannot commit afterwards; their temporary files are removed by the next Open.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		s.bg.Wait()
		if serr := s.syncPending(); serr != nil {
			err = fmt.Errorf("store: close: %w (the next Open hashes the blobs committed since the last sync)", serr)
		}
		if ferr := s.flushAccess(); ferr != nil && err == nil {
			err = fmt.Errorf("store: close: write access records: %w", ferr)
		}
		if cerr := s.db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: close index: %w", cerr)
		}
		s.lock.Close()
	})
	return err
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// MaxBytes is the size bound the store was opened with; 0 means unbounded.
func (s *Store) MaxBytes() int64 { return s.max }

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}
