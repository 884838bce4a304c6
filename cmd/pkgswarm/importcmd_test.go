package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImportAcceptsOnlyListedDebs: a node that has seen the repository's
// root and index (apt-get update through it) imports, offline, the .debs of
// an apt archives directory whose digests that index lists, refuses a
// tampered one, and then serves the imported ones from its cache.
func TestImportAcceptsOnlyListedDebs(t *testing.T) {
	n := newOpNode(t, nil)
	n.aptDownload(t, n.aptClient(t)) // update only: root and Packages

	archives := t.TempDir()
	for _, d := range n.repo.Debs {
		copyFile(t, filepath.Join(n.repo.Dir, d.Path), filepath.Join(archives, d.FileName()))
	}
	bad := filepath.Join(archives, n.repo.Debs["bravo"].FileName())
	b, _ := os.ReadFile(bad)
	b[len(b)/2] ^= 1
	os.WriteFile(bad, b, 0o644)
	os.WriteFile(filepath.Join(archives, "lock"), nil, 0o640)
	os.Mkdir(filepath.Join(archives, "partial"), 0o755)
	os.WriteFile(filepath.Join(archives, "partial", "delta_1.0_amd64.deb"), []byte("half a package"), 0o644)

	t.Run("refused while serve runs", func(t *testing.T) {
		_, _, err := runCLI(t, "import", "--data-dir", n.dir, archives)
		if err == nil || !strings.Contains(err.Error(), "in use by a running pkgswarm: stop it first") {
			t.Fatalf("import into a running node's cache: %v, want advice to stop serve", err)
		}
	})
	n.Stop()
	out, _, err := runCLI(t, "import", archives, "--data-dir", n.dir) // flags after the directory work too
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "imported 2 files") || !strings.Contains(out, "1 refused") ||
		!strings.Contains(out, "refused "+bad+": no verified root lists sha256") {
		t.Fatalf("import output:\n%s", out)
	}
	if _, _, err := runCLI(t, "import", "--strict", "--data-dir", n.dir, archives); err == nil || !strings.Contains(err.Error(), "1 files refused") {
		t.Fatalf("import --strict with a tampered file: %v", err)
	}

	n.start(t, nil)
	for _, name := range []string{"alpha", "charlie"} {
		d, _ := store.ParseDigest(n.repo.Debs[name].SHA256)
		if !n.Store.HasBlob(d) || !n.Store.Shareable(d) {
			t.Fatalf("%s: imported blob held %v, verified for peers %v", name, n.Store.HasBlob(d), n.Store.Shareable(d))
		}
	}
	before := n.origin.Requests(".deb")
	c := n.aptClient(t)
	n.aptDownload(t, c, "alpha", "charlie")
	if got := n.origin.Requests(".deb"); got != before {
		t.Fatalf("apt's download of imported packages made %d origin .deb requests, want 0", got-before)
	}
	if n.State().Served["cache"] < n.repo.Debs["alpha"].Size+n.repo.Debs["charlie"].Size {
		t.Fatalf("imported packages were not served from the cache: %v", n.State().Served)
	}
}

func TestImportErrors(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no directory", []string{"import"}, "name a directory"},
		{"no cache", []string{"import", "--data-dir", empty, empty}, "no pkgswarm cache in " + empty},
		{"missing directory", []string{"import", "--data-dir", empty, filepath.Join(empty, "nope")}, "reading " + filepath.Join(empty, "nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v: %v, want an error saying %q", tc.args, err, tc.want)
			}
		})
	}
}
