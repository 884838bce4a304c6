package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxKeyLen bounds index keys (badger's own limit is 65,000 bytes).
const maxKeyLen = 16 << 10

// maxValueLen bounds index values. It is checked here so that badger's own
// error, which embeds a hex dump of the value, never reaches a log.
const maxValueLen = 256 << 10

// URLEntry is what the store knows about a URL served from the origin.
type URLEntry struct {
	Digest       Digest // the blob holding the body
	Size         int64
	ContentType  string
	LastModified string
	ETag         string
	Fetched      time.Time // when the origin last confirmed it (200 or 304); stored to the nanosecond, read back in UTC
	Verified     bool      // a signed root vouched for Digest
}

// Expect is what a verified root promises about a path.
type Expect struct {
	SHA256 Digest
	Size   int64  // -1 when unknown
	Root   string // which root made the promise (e.g. its URL)
}

// RootRecord is the accepted signed root of one repository.
type RootRecord struct {
	Repo       string // repository key; one record per repository
	URL        string
	Digest     Digest
	Date       time.Time
	ValidUntil time.Time
	Signer     string
	Accepted   time.Time
	Untrusted  bool
	Detached   Digest // digest of a detached signature (Release.gpg); zero for InRelease
	// Keys are the fingerprints the repository is bound to: every key that
	// signed an accepted root (a later root must be signed by one of them).
	Keys []string
	// Suite and Codename of the accepted root: a later root must keep them.
	Suite, Codename string
}

func key(prefix byte, k string) ([]byte, error) {
	if len(k) > maxKeyLen {
		return nil, fmt.Errorf("key of %d bytes is longer than the limit of %d", len(k), maxKeyLen)
	}
	b := make([]byte, 1+len(k))
	b[0] = prefix
	copy(b[1:], k)
	return b, nil
}

func (s *Store) put(what string, prefix byte, k string, v []byte) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	kb, err := key(prefix, k)
	if err != nil {
		return fmt.Errorf("store: put %s %q: %w", what, truncate(k, 200), err)
	}
	if len(v) > maxValueLen {
		return fmt.Errorf("store: put %s %q: value of %d bytes is larger than the limit of %d", what, truncate(k, 200), len(v), maxValueLen)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(kb, v) }); err != nil {
		return fmt.Errorf("store: put %s %q: %w", what, truncate(k, 200), err)
	}
	return nil
}

func (s *Store) get(what string, prefix byte, k string) ([]byte, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	kb, err := key(prefix, k)
	if err != nil {
		return nil, fmt.Errorf("store: get %s %q: %w", what, truncate(k, 200), err)
	}
	var v []byte
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(kb)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: get %s %q: %w", what, truncate(k, 200), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s %q: %w", what, truncate(k, 200), err)
	}
	return v, nil
}

func (s *Store) del(what string, prefix byte, k string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	kb, err := key(prefix, k)
	if err != nil {
		return fmt.Errorf("store: delete %s %q: %w", what, truncate(k, 200), err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(kb) }); err != nil {
		return fmt.Errorf("store: delete %s %q: %w", what, truncate(k, 200), err)
	}
	return nil
}

// PutURL records e for url, replacing any earlier entry.
func (s *Store) PutURL(url string, e URLEntry) error {
	return s.put("URL entry", prefixURL, url, encodeURLEntry(e))
}

// GetURL returns the entry for url; the error wraps ErrNotFound if there is none.
func (s *Store) GetURL(url string) (URLEntry, error) {
	v, err := s.get("URL entry", prefixURL, url)
	if err != nil {
		return URLEntry{}, err
	}
	return decodeURLEntry(v)
}

// DeleteURL removes the entry for url (no error if there is none).
func (s *Store) DeleteURL(url string) error {
	return s.del("URL entry", prefixURL, url)
}

// PutExpects records every path → expectation in batch, replacing earlier ones,
// in one batched write (not atomic: after a crash some may be written).
func (s *Store) PutExpects(batch map[string]Expect) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	// Keys and values are cut from shared slabs: one allocation per ~64 KiB
	// instead of two per entry (a Packages file lists tens of thousands).
	var slab []byte
	for path, x := range batch {
		if len(path) > maxKeyLen {
			return fmt.Errorf("store: put expectation %q: key of %d bytes is longer than the limit of %d", truncate(path, 200), len(path), maxKeyLen)
		}
		need := 1 + len(path) + 1 + len(x.SHA256) + 2*binary.MaxVarintLen64 + len(x.Root)
		if cap(slab)-len(slab) < need {
			slab = make([]byte, 0, max(64<<10, need))
		}
		start := len(slab)
		slab = append(slab, prefixExpect)
		slab = append(slab, path...)
		k := slab[start:len(slab):len(slab)]
		start = len(slab)
		slab = appendExpect(slab, x)
		b.set(k, slab[start:len(slab):len(slab)])
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("store: put %d expectations: %w", len(batch), err)
	}
	return nil
}

// GetExpect returns the expectation for path; the error wraps ErrNotFound if
// there is none.
func (s *Store) GetExpect(path string) (Expect, error) {
	v, err := s.get("expectation", prefixExpect, path)
	if err != nil {
		return Expect{}, err
	}
	return decodeExpect(v)
}

// DeleteExpects removes the expectations for paths in one batched write.
func (s *Store) DeleteExpects(paths []string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	b := badgerBatch{wb: s.db.NewWriteBatch()}
	defer b.wb.Cancel()
	for _, path := range paths {
		k, err := key(prefixExpect, path)
		if err != nil {
			return fmt.Errorf("store: delete expectation %q: %w", truncate(path, 200), err)
		}
		b.del(k)
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("store: delete %d expectations: %w", len(paths), err)
	}
	return nil
}

// PutRoot records r as the accepted root of r.Repo, replacing the earlier one.
// The store does not enforce that roots move forward in time; the caller does.
func (s *Store) PutRoot(r RootRecord) error {
	if r.Repo == "" {
		return errors.New("store: put root: RootRecord.Repo is empty")
	}
	return s.put("root", prefixRoot, r.Repo, encodeRootRecord(r))
}

// GetRoot returns the accepted root of repo; the error wraps ErrNotFound if there
// is none.
func (s *Store) GetRoot(repo string) (RootRecord, error) {
	v, err := s.get("root", prefixRoot, repo)
	if err != nil {
		return RootRecord{}, err
	}
	return decodeRootRecord(v)
}

// DeleteRoot removes the root record of repo (no error if there is none).
func (s *Store) DeleteRoot(repo string) error {
	return s.del("root", prefixRoot, repo)
}

// Roots returns every accepted root, ordered by repository.
func (s *Store) Roots() ([]RootRecord, error) {
	var out []RootRecord
	err := s.scan([]byte{prefixRoot}, func(k, v []byte) error {
		r, err := decodeRootRecord(v)
		if err != nil {
			return fmt.Errorf("root record %q: %w", k[1:], err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list roots: %w", err)
	}
	return out, nil
}

// PutMeta stores val under key in the generic namespace for other tiers (peers,
// swarm state). Values are limited to 256 KiB; keep them small.
func (s *Store) PutMeta(key string, val []byte) error {
	return s.put("metadata", prefixMeta, key, val)
}

// GetMeta returns the value of key; the error wraps ErrNotFound if there is none.
func (s *Store) GetMeta(key string) ([]byte, error) {
	return s.get("metadata", prefixMeta, key)
}

// DeleteMeta removes key (no error if there is none).
func (s *Store) DeleteMeta(key string) error {
	return s.del("metadata", prefixMeta, key)
}

// ScanMeta calls fn for every metadata key starting with prefix, in key order.
// fn must not keep val after it returns, nor call the Store. If fn returns an
// error, ScanMeta stops and returns it.
func (s *Store) ScanMeta(prefix string, fn func(key string, val []byte) error) error {
	p, err := key(prefixMeta, prefix)
	if err != nil {
		return fmt.Errorf("store: scan metadata %q: %w", truncate(prefix, 200), err)
	}
	return s.scan(p, func(k, v []byte) error { return fn(string(k[1:]), v) })
}

func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
		}
		return nil
	})
}
