// Package pgpkey reads OpenPGP public keys as keyrings and key files hold
// them: one or more armored "PUBLIC KEY BLOCK"s (with any text around them),
// or a binary keyring. It is shared by the apt keyrings and the rpm signing
// keys; each caller adds its own checks (secret keys, keyboxes, bounds).
package pgpkey

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// ArmorBegin starts an armored public key block.
const ArmorBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"

// ErrNoKey means the data holds no public key.
var ErrNoKey = errors.New("no OpenPGP public key found")

// Read returns the keys of every armored public key block in data, or, when
// data has none, of data as a binary keyring.
func Read(data []byte) (openpgp.EntityList, error) {
	if !bytes.Contains(data, []byte(ArmorBegin)) {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("not an OpenPGP binary keyring, and no %q line: %w", ArmorBegin, err)
		}
		if len(el) == 0 {
			return nil, ErrNoKey
		}
		return el, nil
	}
	var all openpgp.EntityList
	for rest := data; ; {
		i := bytes.Index(rest, []byte(ArmorBegin))
		if i < 0 {
			break
		}
		rest = rest[i:]
		blk, err := armor.Decode(bytes.NewReader(rest))
		if err != nil {
			return nil, fmt.Errorf("armored key block: %w", err)
		}
		el, err := openpgp.ReadKeyRing(blk.Body)
		if err != nil {
			return nil, fmt.Errorf("armored key block: %w", err)
		}
		all = append(all, el...)
		rest = rest[len(ArmorBegin):]
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%w in the armored data", ErrNoKey)
	}
	return all, nil
}
