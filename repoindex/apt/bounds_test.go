package apt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

// shortReleaseText is a Release of n SHA256 entries with short paths, to
// reach MaxReleaseEntries within MaxReleaseSize.
func shortReleaseText(n int, date time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Suite: stable\nDate: %s\nSHA256:\n", date.UTC().Format(time.RFC1123))
	for i := range n {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		fmt.Fprintf(&b, " %s 1 %x\n", hex.EncodeToString(sum[:]), i)
	}
	return b.Bytes()
}

// TestVerifyInReleaseHuge is the regression test of issue 11's huge signed
// Release (330,000 entries, 32 MB: 85 s and 514 MB on a node): such a file
// is refused with repoindex.ErrTooLarge, before any signature work when it
// is over MaxReleaseSize and after it when it lists more than
// MaxReleaseEntries files, within a memory budget. Before the bounds both
// were accepted.
func TestVerifyInReleaseHuge(t *testing.T) {
	key := newTestKey(t, "Huge Key", keyOpts{})
	kr := publicKeyring(t, key)
	now := time.Now()
	huge := 330_000
	if limittest.Race {
		huge = 60_000 // 6.6 MB, over MaxReleaseSize still; signing 36 MB takes long there
	}
	tests := []struct {
		name    string
		text    []byte
		budget  uint64
		maxTime time.Duration
	}{
		// 36 MB: refused before the signature is even looked at.
		{"330,000 entries", bigReleaseText(huge, now.Add(-time.Hour)), 1 << 20, time.Second},
		// Under MaxReleaseSize, over MaxReleaseEntries: verified, then
		// refused by the parser.
		{"too many entries", shortReleaseText(50_001 /* MaxReleaseEntries+1 */, now.Add(-time.Hour)), 64 << 20, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signed := clearsignWith(t, tc.text, signOpts{}, key)
			m := limittest.Start(tc.budget)
			start := time.Now()
			rel, err := VerifyInRelease(signed, kr, now)
			took := time.Since(start)
			m.Check(t, tc.name)
			t.Logf("%d bytes: %v in %v", len(signed), err, took)
			if !errors.Is(err, repoindex.ErrTooLarge) || rel != nil {
				t.Fatalf("VerifyInRelease of %d bytes: %v, want an error wrapping repoindex.ErrTooLarge", len(signed), err)
			}
			if !strings.HasPrefix(err.Error(), "InRelease") {
				t.Errorf("error does not name the file: %v", err)
			}
			if took > tc.maxTime {
				t.Errorf("took %v, want less than %v", took, tc.maxTime)
			}
		})
	}
	t.Run("detached", func(t *testing.T) {
		text := bigReleaseText(huge, now.Add(-time.Hour))
		if _, err := VerifyRelease(text, detachSign(t, text, false, signOpts{}, key), kr, now); !errors.Is(err, repoindex.ErrTooLarge) {
			t.Errorf("VerifyRelease: %v, want an error wrapping repoindex.ErrTooLarge", err)
		}
		if _, err := VerifyRelease([]byte("SHA256:\n"), make([]byte, 64<<10+1) /* MaxSignatureSize+1 */, kr, now); !errors.Is(err, repoindex.ErrTooLarge) || !errors.Is(err, ErrBadSignature) {
			t.Errorf("VerifyRelease with a huge signature: %v, want ErrBadSignature and repoindex.ErrTooLarge", err)
		}
	})
}

// TestVerifyInReleaseAtTheBounds: a Release just within both bounds
// verifies, within a memory budget.
func TestVerifyInReleaseAtTheBounds(t *testing.T) {
	key := newTestKey(t, "Bound Key", keyOpts{})
	kr := publicKeyring(t, key)
	now := time.Now()
	n := 0
	for len(bigReleaseText(n+1000, now)) < 4<<20-4096 { // MaxReleaseSize
		n += 1000
	}
	signed := clearsignWith(t, bigReleaseText(n, now.Add(-time.Hour)), signOpts{}, key)
	m := limittest.Start(64 << 20)
	rel, err := VerifyInRelease(signed, kr, now)
	m.Check(t, fmt.Sprintf("%d entries, %d bytes", n, len(signed)))
	if err != nil || len(rel.Files) != n {
		t.Fatalf("VerifyInRelease: %v", err)
	}
}

// TestIndexBombs: Packages and Sources bombs (one line of hundreds of MiB
// in every compression format; a Sources stanza of a million files; a
// checksum line of blanks) fail with repoindex.ErrTooLarge while the heap
// grows by less than indexBudget.
func TestIndexBombs(t *testing.T) {
	const indexBudget = 56 << 20 // a line of maxLine (8 MiB) in a doubling buffer, its garbage, the decoder
	sum := strings.Repeat("ab", 32)
	type bomb struct {
		name, ext, prefix, pattern string
		sources                    bool
	}
	var bombs []bomb
	for _, ext := range limittest.Formats {
		bombs = append(bombs, bomb{"Packages line " + ext, ext, "Package: a\nDescription: ", "a", false})
	}
	bombs = append(bombs,
		bomb{"Sources files", ".xz", "Package: a\nDirectory: d\nChecksums-Sha256:\n", " " + sum + " 1 n\n", true},
		bomb{"Sources blanks", ".gz", "Package: a\nDirectory: d\nChecksums-Sha256:\n " + sum, " ", true},
		bomb{"Sources line", ".zst", "Package: a\nDirectory: d\nBinary: ", "a, ", true},
	)
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			size := int64(512 << 20)
			if b.ext == ".lzma" {
				size = 64 << 20
			}
			data := limittest.Bomb(t, b.ext, []byte(b.prefix), []byte(b.pattern), size, nil)
			rc, err := decompress.NewReaderLimit("Index"+b.ext, bytes.NewReader(data), 4<<30) // the proxy's bound
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			m := limittest.Start(indexBudget)
			r := m.Reader(rc)
			if b.sources {
				err = ParseSources(r, func(string, SourceFile) error { return nil })
			} else {
				err = ParsePackages(r, func(*Package) error { return nil })
			}
			m.Check(t, b.name)
			if !errors.Is(err, repoindex.ErrTooLarge) {
				t.Fatalf("%d-byte bomb: %v, want an error wrapping repoindex.ErrTooLarge", len(data), err)
			}
			t.Log(err)
		})
	}
}
