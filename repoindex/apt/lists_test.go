package apt

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

const aptListsDir = "/var/lib/apt/lists"

// realLists returns the files apt downloaded that match pattern, or skips.
func realLists(t *testing.T, pattern string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(aptListsDir, pattern))
	var out []string
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Skipf("no %s in %s (run apt-get update to have real indexes to test on)", pattern, aptListsDir)
	}
	return out
}

func openList(t *testing.T, p string) io.ReadCloser {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := decompress.NewReader(p, f)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// Every InRelease apt accepted verifies with the host's trusted keys, and
// every Packages list apt stored is one its InRelease lists, by digest.
func TestRealAptLists(t *testing.T) {
	t.Parallel()
	inReleases := realLists(t, "*_InRelease")
	kr, err := LoadKeyring(DefaultKeyringPaths...)
	if err != nil {
		t.Fatal(err)
	}
	var releases []*Release
	for _, p := range inReleases {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Judge it at its own Date, so the test does not depend on when
		// it runs relative to Valid-Until.
		block, _ := clearsign.Decode(data)
		if block == nil {
			t.Fatalf("%s: not clearsigned", p)
		}
		unverified, err := ParseRelease(block.Plaintext)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rel, err := VerifyInRelease(data, kr, unverified.Date.Add(time.Minute))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		t.Logf("%s: %d files, signed by %s", filepath.Base(p), len(rel.Files), rel.Signer)
		releases = append(releases, rel)
	}
	for _, p := range realLists(t, "*_Packages*") {
		rc := openList(t, p)
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sum := hex.EncodeToString(h.Sum(nil))
		found := false
		for _, rel := range releases {
			if path, fs, ok := rel.ByHash(sum); ok && fs.Size == n {
				found = true
				if kind, _ := IsIndexPath(path); kind != IndexPackages {
					t.Errorf("%s: matched %s, of kind %v", p, path, kind)
				}
			}
		}
		if !found {
			t.Errorf("%s (sha256 %s, %d bytes) is listed by no verified InRelease", p, sum, n)
		}
	}
}
