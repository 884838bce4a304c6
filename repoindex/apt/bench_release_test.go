package apt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// bigReleaseText is a Release of n SHA256 entries of about 100 bytes.
func bigReleaseText(n int, date time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Origin: Test\nSuite: stable\nCodename: bookworm\nDate: %s\nAcquire-By-Hash: yes\nSHA256:\n", date.UTC().Format(time.RFC1123))
	for i := range n {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		fmt.Fprintf(&b, " %s %8d main/binary-arch%d/Packages%d.xz\n", hex.EncodeToString(sum[:]), i, i%100, i)
	}
	return []byte(b.String())
}

// BenchmarkParseRelease parses a Release of 10,000 entries (as many as
// Debian's largest) and one of 35,000 (3.8 MB, near MaxReleaseSize).
func BenchmarkParseRelease(b *testing.B) {
	for _, n := range []int{10_000, 35_000} {
		text := bigReleaseText(n, time.Now())
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRelease(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyInRelease verifies and parses a clearsigned Release of
// 35,000 entries (3.8 MB, near MaxReleaseSize).
func BenchmarkVerifyInRelease(b *testing.B) {
	key := newTestKey(b, "Bench Key", keyOpts{})
	kr := publicKeyring(b, key)
	now := time.Now()
	signed := clearsignWith(b, bigReleaseText(35_000, now.Add(-time.Hour)), signOpts{}, key)
	b.SetBytes(int64(len(signed)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyInRelease(signed, kr, now); err != nil {
			b.Fatal(err)
		}
	}
}
