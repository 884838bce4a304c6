package rpmsig

import (
	"bytes"
	"fmt"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/pgpkey"
	"sort"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// KeySet is an immutable set of trusted OpenPGP public keys. The zero value
// and nil are empty sets, which trust nothing. It is safe for concurrent use.
type KeySet struct {
	entities openpgp.EntityList
	// byID maps a key ID to the primary keys and subkeys with that ID.
	byID map[uint64][]*packet.PublicKey
}

// MaxKeyData bounds one argument of LoadKeys. A public key is some KiB
// (urpmi's pubkey files about 2 KiB); a keyring of every key a
// distribution ever used some hundred KiB.
const MaxKeyData = 4 << 20

// LoadKeys reads OpenPGP public keys. Each argument is one file's content:
// ASCII-armored (one or more PUBLIC KEY BLOCKs, as in urpmi's pubkey files
// and gpg --armor --export) or binary (a keyring as gpg --export writes it).
// It fails when an argument holds no usable key, so a misconfigured key file
// is noticed instead of silently trusting nothing, or is over MaxKeyData
// (the error wraps repoindex.ErrTooLarge). On error the KeySet is nil.
func LoadKeys(data ...[]byte) (*KeySet, error) {
	ks := &KeySet{byID: map[uint64][]*packet.PublicKey{}}
	for i, d := range data {
		if len(d) > MaxKeyData {
			return nil, fmt.Errorf("rpmsig: key data #%d: %w: %d bytes, more than the %d accepted (a public key is some KiB)", i+1, repoindex.ErrTooLarge, len(d), MaxKeyData)
		}
		el, err := readKeys(d)
		if err != nil {
			return nil, fmt.Errorf("rpmsig: key data #%d: %w", i+1, err)
		}
		for _, e := range el {
			ks.add(e)
		}
	}
	return ks, nil
}

func readKeys(d []byte) (openpgp.EntityList, error) { return pgpkey.Read(d) }

func (ks *KeySet) add(e *openpgp.Entity) {
	for _, have := range ks.entities {
		if bytes.Equal(have.PrimaryKey.Fingerprint, e.PrimaryKey.Fingerprint) {
			return
		}
	}
	ks.entities = append(ks.entities, e)
	ks.byID[e.PrimaryKey.KeyId] = append(ks.byID[e.PrimaryKey.KeyId], e.PrimaryKey)
	for _, sk := range e.Subkeys {
		ks.byID[sk.PublicKey.KeyId] = append(ks.byID[sk.PublicKey.KeyId], sk.PublicKey)
	}
}

// Len is the number of primary keys in the set.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.entities)
}

// KeyIDs returns the long (64-bit) key IDs of the set's primary keys as
// 16 lower-case hex digits, sorted. These identify a medium's signers in
// urpmi.NameKey.
func (ks *KeySet) KeyIDs() []string {
	if ks == nil {
		return nil
	}
	ids := make([]string, 0, len(ks.entities))
	for _, e := range ks.entities {
		ids = append(ids, fmt.Sprintf("%016x", e.PrimaryKey.KeyId))
	}
	sort.Strings(ids)
	return ids
}

// Entities returns the keys as a go-crypto keyring, e.g. for
// rpmmd.VerifyRepomd. The caller must not modify it.
func (ks *KeySet) Entities() openpgp.EntityList {
	if ks == nil {
		return nil
	}
	return ks.entities
}

// lookup returns the keys (primary or sub) matching a signature's issuer:
// by fingerprint when the signature carries one, else by key ID.
func (ks *KeySet) lookup(keyID uint64, fingerprint []byte) []*packet.PublicKey {
	if ks == nil {
		return nil
	}
	if len(fingerprint) > 0 {
		for _, cands := range ks.byID {
			for _, pk := range cands {
				if bytes.Equal(pk.Fingerprint, fingerprint) {
					return []*packet.PublicKey{pk}
				}
			}
		}
		return nil
	}
	return ks.byID[keyID]
}
