package rpmsig

import (
	"fmt"
	"os"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// ExpectFor is the expectation for an rpm that urpmi metadata knows as nevra
// (name-version-release.arch) of exactly size bytes, signed by a key in keys.
// SHA256 is nil (the metadata gives none); Key is urpmi.NameKey over
// keys.KeyIDs(), nevra and size; Check verifies the complete file with
// VerifyRPM and then that the signed header names nevra and the file is
// size bytes, failing with ErrMismatch otherwise. With a nil or empty keys,
// Check refuses every file (ErrUnsigned or ErrUnknownKey).
func ExpectFor(keys *KeySet, nevra string, size int64) repoindex.Expectation {
	return repoindex.Expectation{
		Size: size,
		Key:  urpmi.NameKey(keys.KeyIDs(), nevra, size),
		Check: func(f *os.File) error {
			info, err := VerifyRPM(f, keys)
			if err != nil {
				return err
			}
			if info.NEVRA != nevra {
				return fmt.Errorf("rpm %s: %w: signed header names %s, metadata expects %s", f.Name(), ErrMismatch, info.NEVRA, nevra)
			}
			if info.Size != size {
				return fmt.Errorf("rpm %s (%s): %w: %d bytes, metadata expects %d", f.Name(), nevra, ErrMismatch, info.Size, size)
			}
			return nil
		},
	}
}
