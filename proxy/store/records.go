package store

import (
	"fmt"
	"strings"
)

// Typed records kept in the metadata namespace. Their keys are fixed here,
// once, so that no caller builds them from strings.
const (
	shareablePrefix = "v:"       // + hex digest → 1: a signed chain vouched for the blob
	namePrefix      = "rpmname:" // + name key → 32-byte digest of the verified rpm
)

// MarkShareable records that a signed chain vouched for blob d, so that it may
// be served to peers and seeded. Only the trust package calls it.
func (s *Store) MarkShareable(d Digest) error {
	return s.PutMeta(shareablePrefix+d.String(), []byte{1})
}

// Shareable reports whether a signed chain vouched for blob d (whether or not
// the store still holds it).
func (s *Store) Shareable(d Digest) bool {
	v, err := s.GetMeta(shareablePrefix + d.String())
	return err == nil && len(v) == 1
}

// Shareables calls fn for every blob marked shareable, in key order.
func (s *Store) Shareables(fn func(d Digest) error) error {
	return s.ScanMeta(shareablePrefix, func(k string, _ []byte) error {
		d, err := ParseDigest(strings.TrimPrefix(k, shareablePrefix))
		if err != nil {
			return nil // not ours
		}
		return fn(d)
	})
}

// PutName maps a name key (an rpm known by signing keys, NEVRA and size) to
// the digest of the verified rpm.
func (s *Store) PutName(key string, d Digest) error {
	return s.PutMeta(namePrefix+key, d[:])
}

// Name returns the digest a name key maps to, or an error wrapping
// ErrNotFound.
func (s *Store) Name(key string) (Digest, error) {
	v, err := s.GetMeta(namePrefix + key)
	if err != nil {
		return Digest{}, err
	}
	if len(v) != len(Digest{}) {
		return Digest{}, fmt.Errorf("store: name key %s: %d-byte record: %w", key, len(v), ErrNotFound)
	}
	return Digest(v), nil
}
