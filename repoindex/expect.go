package repoindex

import (
	"encoding/hex"
	"os"
)

// Expectation is what a verified root promises about one file. The fetch
// pipeline checks every byte it caches or serves against it; nothing else in
// pkgswarm decides trust.
type Expectation struct {
	// SHA256 is the whole-file digest, or nil where the metadata gives none
	// (urpmi rpms, whose proof is Check).
	SHA256 []byte
	// Size is the exact length in bytes, or -1 when the metadata gives none.
	Size int64
	// Check, if non-nil, is extra proof run on the complete file before it is
	// accepted, e.g. an rpm header signature and payload digest. It must not
	// keep f past its return.
	Check func(f *os.File) error
	// Key is what peers are asked for: "sha256:<hex>" where SHA256 is set, or
	// a name key (see DESIGN.md, Peers) for files known only by name and size.
	Key string
	// Root names the signed root (repository) that made this promise, for
	// logs and the dashboard.
	Root string
}

// Hex returns the expected SHA-256 as lower-case hex, or "" when unknown.
func (e *Expectation) Hex() string {
	if e == nil || e.SHA256 == nil {
		return ""
	}
	return hex.EncodeToString(e.SHA256)
}

// DigestKey is the peer lookup key for a SHA-256 digest.
func DigestKey(sum []byte) string { return "sha256:" + hex.EncodeToString(sum) }
