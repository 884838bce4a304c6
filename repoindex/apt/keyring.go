package apt

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/pgpkey"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// DefaultKeyringPaths are where apt looks for trusted keys on Debian and its
// derivatives. LoadKeyring skips those of them that do not exist.
var DefaultKeyringPaths = []string{"/usr/share/keyrings", "/etc/apt/trusted.gpg.d", "/etc/apt/keyrings", "/etc/apt/trusted.gpg"}

// Keyring is a set of trusted OpenPGP public keys. It is read-only after
// LoadKeyring and safe for concurrent use.
type Keyring struct {
	entities openpgp.EntityList // one per primary key fingerprint
	keys     []KeyInfo          // parallel to entities
	skipped  []SkippedFile
}

// KeyInfo describes one trusted key, for status pages and logs.
type KeyInfo struct {
	Fingerprint string    // upper-case hex, as gpg and apt print it
	UserID      string    // primary user ID, "" if none
	Created     time.Time // creation time of the primary key
	Expires     time.Time // zero when the key does not expire
	Source      string    // file the key was read from
}

// SkippedFile is a file in a keyring directory that LoadKeyring could not
// read and left out.
type SkippedFile struct {
	Path string
	Err  error
}

// LoadKeyring reads trusted keys from paths. Each path is a keyring file or a
// directory, from which the files named *.gpg (binary keyrings) and *.asc
// (armored keys) are read, as apt does; other files are ignored. A path in
// DefaultKeyringPaths that does not exist is skipped; any other missing path
// is an error. A file named in paths that cannot be parsed is an error naming
// it; a file found in a directory that cannot be parsed is left out, logged
// and listed by Skipped, as apt warns about it and goes on. Loading no path,
// or only missing defaults, gives an empty keyring that trusts nothing.
// A key present in several files is kept once, in its newest version (by
// self-signature time).
func LoadKeyring(paths ...string) (*Keyring, error) {
	kr := &Keyring{}
	index := make(map[string]int) // fingerprint → position in entities
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && slices.Contains(DefaultKeyringPaths, p) {
				slog.Debug("apt keyring path does not exist; skipped", "path", p)
				continue
			}
			return nil, fmt.Errorf("keyring %s: %w", p, err)
		}
		if !fi.IsDir() {
			if err := kr.addFile(p, index); err != nil {
				return nil, err
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("keyring directory %s: %w", p, err)
		}
		for _, e := range entries { // sorted by name
			name := e.Name()
			if !strings.HasSuffix(name, ".gpg") && !strings.HasSuffix(name, ".asc") {
				continue
			}
			fp := filepath.Join(p, name)
			if st, err := os.Stat(fp); err != nil || !st.Mode().IsRegular() {
				continue // dangling link, subdirectory, device
			}
			if err := kr.addFile(fp, index); err != nil {
				slog.Warn("apt keyring file skipped", "path", fp, "err", err)
				kr.skipped = append(kr.skipped, SkippedFile{Path: fp, Err: err})
			}
		}
	}
	return kr, nil
}

// maxKeyringFile bounds a keyring file. Debian's archive keyring is some
// dozen KiB; a trusted.gpg holding every key a host ever added some
// hundred KiB.
const maxKeyringFile = 16 << 20

// addFile reads the keys of one file into kr.
func (kr *Keyring) addFile(p string, index map[string]int) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("keyring %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return fmt.Errorf("keyring %s: %w", p, err)
	}
	if len(data) > maxKeyringFile {
		return fmt.Errorf("keyring %s: %w: larger than %d bytes (keyrings are some hundred KiB at most)", p, repoindex.ErrTooLarge, maxKeyringFile)
	}
	return kr.addData(p, data, index)
}

// addData adds the keys of data, the content of the keyring file p, to kr.
// On error kr is unchanged.
func (kr *Keyring) addData(p string, data []byte, index map[string]int) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil // apt ignores empty keyring files, e.g. a fresh trusted.gpg
	}
	ents, err := parseKeys(data)
	if err != nil {
		return fmt.Errorf("keyring %s: %w", p, err)
	}
	for _, e := range ents {
		info := keyInfo(e, p)
		if i, dup := index[info.Fingerprint]; dup {
			if selfSigTime(e).After(selfSigTime(kr.entities[i])) {
				kr.entities[i], kr.keys[i] = e, info
			}
			continue
		}
		index[info.Fingerprint] = len(kr.entities)
		kr.entities = append(kr.entities, e)
		kr.keys = append(kr.keys, info)
	}
	return nil
}

// parseKeys reads a binary keyring, or one or more armored public key
// blocks, and refuses secret keys: a trusted keyring holds public keys.
func parseKeys(data []byte) (openpgp.EntityList, error) {
	if len(data) >= 12 && string(data[8:12]) == "KBXf" {
		return nil, errors.New("a GnuPG keybox, which apt cannot read either; export the keys with gpg --export into a .gpg file")
	}
	ents, err := pgpkey.Read(data)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("key %X is a secret key; a trusted keyring holds public keys only", e.PrimaryKey.Fingerprint)
		}
	}
	return ents, nil
}

func keyInfo(e *openpgp.Entity, source string) KeyInfo {
	info := KeyInfo{
		Fingerprint: strings.ToUpper(fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)),
		Created:     e.PrimaryKey.CreationTime,
		Source:      source,
	}
	if id := e.PrimaryIdentity(); id != nil {
		info.UserID = id.Name
	}
	if sig, _ := e.PrimarySelfSignature(); sig != nil && sig.KeyLifetimeSecs != nil && *sig.KeyLifetimeSecs != 0 {
		info.Expires = e.PrimaryKey.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second)
	}
	return info
}

func selfSigTime(e *openpgp.Entity) time.Time {
	if sig, _ := e.PrimarySelfSignature(); sig != nil {
		return sig.CreationTime
	}
	return time.Time{}
}

// Len returns the number of distinct keys (primary key fingerprints).
func (kr *Keyring) Len() int {
	if kr == nil {
		return 0
	}
	return len(kr.entities)
}

// KeyIDs returns the fingerprints of the keys in upper-case hex, in the order
// they were loaded.
func (kr *Keyring) KeyIDs() []string {
	if kr == nil {
		return nil
	}
	ids := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		ids[i] = k.Fingerprint
	}
	return ids
}

// Keys describes the keys, in the order they were loaded.
func (kr *Keyring) Keys() []KeyInfo {
	if kr == nil {
		return nil
	}
	return slices.Clone(kr.keys)
}

// Skipped lists the files of keyring directories that could not be read.
func (kr *Keyring) Skipped() []SkippedFile {
	if kr == nil {
		return nil
	}
	return slices.Clone(kr.skipped)
}

// signingKeyring is the openpgp.KeyRing that verification uses. It differs
// from openpgp.EntityList in one way, to match gpgv: a primary key whose
// self-signature carries no key-flags subpacket (keys made before RFC 4880
// made it common) may sign; EntityList would ignore it. Subkeys must be
// flagged for signing.
type signingKeyring struct{ el openpgp.EntityList }

func (s signingKeyring) KeysById(id uint64) []openpgp.Key { return s.el.KeysById(id) }

func (s signingKeyring) KeysByIdUsage(id uint64, usage byte) []openpgp.Key {
	var keys []openpgp.Key
	for _, k := range s.el.KeysById(id) {
		sig := k.SelfSignature
		if sig == nil {
			continue
		}
		if usage&packet.KeyFlagSign != 0 {
			if k.PublicKey != k.Entity.PrimaryKey {
				// A signing subkey needs the sign flag and its embedded
				// back-signature, which openpgp checks and dereferences.
				if !sig.FlagsValid || !sig.FlagSign || sig.EmbeddedSignature == nil {
					continue
				}
			} else if sig.FlagsValid && !sig.FlagSign {
				continue
			}
		}
		keys = append(keys, k)
	}
	return keys
}

func (s signingKeyring) DecryptionKeys() []openpgp.Key { return nil }
