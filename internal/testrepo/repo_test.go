package testrepo_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/ulikunitz/xz"
)

var pkgs = []testrepo.Package{
	{Name: "hello", Version: "2.10-3", Size: 3000, Seed: 1},
	{Name: "big", Size: 2 << 20, Seed: 2},
	{Name: "libtiny1", Version: "1:0.5", Size: 0, Seed: 3, Depends: "hello"},
	{Name: "docs", Arch: "all", Size: 100, Seed: 4, Compression: "xz"},
	{Name: "other-arch", Arch: "arm64", Size: 10, Seed: 5},
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gpgv verifies with the real gpgv and only the repository's keyring.
func gpgv(t *testing.T, keyring string, args ...string) error {
	t.Helper()
	testrepo.RequireTools(t, "gpgv")
	out, err := exec.Command("gpgv", append([]string{"--keyring", keyring}, args...)...).CombinedOutput()
	if err != nil {
		t.Logf("gpgv: %s", out)
	}
	return err
}

func TestBuildLayout(t *testing.T) {
	t.Parallel()
	r := testrepo.Build(t, testrepo.Options{Packages: pkgs, ValidUntil: time.Hour, Codename: "bookworm"})

	t.Run("signatures verify with gpgv", func(t *testing.T) {
		if err := gpgv(t, r.Key.KeyringPath, r.Path(r.DistPath("InRelease"))); err != nil {
			t.Errorf("InRelease: %v", err)
		}
		if err := gpgv(t, r.Key.KeyringPath, r.Path(r.DistPath("Release.gpg")), r.Path(r.DistPath("Release"))); err != nil {
			t.Errorf("Release.gpg: %v", err)
		}
		// The clearsigned text is the Release file.
		in := string(read(t, r.Path(r.DistPath("InRelease"))))
		if !strings.Contains(in, "Hash: SHA256\n\n"+r.Release) {
			t.Errorf("InRelease does not wrap Release:\n%s", in)
		}
		if got := string(read(t, r.Path(r.DistPath("Release")))); got != r.Release {
			t.Errorf("Release on disk differs from r.Release")
		}
	})

	t.Run("Release fields", func(t *testing.T) {
		ps, err := testrepo.ParseParagraphs(r.Release)
		if err != nil || len(ps) != 1 {
			t.Fatalf("parse Release: %v (%d paragraphs)", err, len(ps))
		}
		rel := ps[0]
		want := map[string]string{
			"Origin": "pkgswarm-test", "Label": "pkgswarm-test", "Suite": "stable", "Codename": "bookworm",
			"Architectures": "amd64", "Components": "main", "Acquire-By-Hash": "yes",
		}
		for k, v := range want {
			if got, _ := rel.Get(k); got != v {
				t.Errorf("Release %s = %q, want %q", k, got, v)
			}
		}
		date, _ := rel.Get("Date")
		d, err := time.Parse(time.RFC1123, date)
		if err != nil || !d.Equal(r.Date) {
			t.Errorf("Date %q (%v) != r.Date %v", date, err, r.Date)
		}
		vu, _ := rel.Get("Valid-Until")
		v, err := time.Parse(time.RFC1123, vu)
		if err != nil || !v.Equal(r.Date.Add(time.Hour)) {
			t.Errorf("Valid-Until %q (%v), want Date + 1h", vu, err)
		}
		// Every SHA256 line matches the file on disk and its by-hash copy.
		sums, _ := rel.Get("SHA256")
		md5s, _ := rel.Get("MD5Sum")
		lines := strings.Split(strings.TrimSpace(sums), "\n")
		if len(lines) != 4 || len(strings.Split(strings.TrimSpace(md5s), "\n")) != 4 {
			t.Fatalf("want Packages, .gz, .xz and Release listed; SHA256:\n%s\nMD5Sum:\n%s", sums, md5s)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 3 {
				t.Fatalf("bad SHA256 line %q", l)
			}
			b := read(t, r.Path(r.DistPath(f[2])))
			if sha(b) != f[0] || strconv.Itoa(len(b)) != f[1] {
				t.Errorf("%s: Release says %s %s, disk has %s %d", f[2], f[0], f[1], sha(b), len(b))
			}
			m := md5.Sum(b)
			if !strings.Contains(md5s, hex.EncodeToString(m[:])) {
				t.Errorf("%s: MD5 not listed", f[2])
			}
			byHash := r.Path(r.DistPath(filepath.Dir(f[2]) + "/by-hash/SHA256/" + f[0]))
			if !bytes.Equal(read(t, byHash), b) {
				t.Errorf("by-hash copy of %s differs", f[2])
			}
		}
	})

	t.Run("Packages as dpkg-scanpackages writes it", func(t *testing.T) {
		plain := read(t, r.Path(r.PackagesPath("")))
		gz, err := gzip.NewReader(bytes.NewReader(read(t, r.Path(r.PackagesPath(".gz")))))
		if err != nil {
			t.Fatal(err)
		}
		gzBytes, _ := io.ReadAll(gz)
		xr, err := xz.NewReader(bytes.NewReader(read(t, r.Path(r.PackagesPath(".xz")))))
		if err != nil {
			t.Fatal(err)
		}
		xzBytes, _ := io.ReadAll(xr)
		if !bytes.Equal(plain, gzBytes) || !bytes.Equal(plain, xzBytes) {
			t.Fatal("Packages, Packages.gz and Packages.xz disagree")
		}
		ps, err := testrepo.ParseParagraphs(string(plain))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range ps {
			name, _ := p.Get("Package")
			names = append(names, name)
			d := r.Debs[name]
			deb := read(t, r.Path(d.Path))
			m := md5.Sum(deb)
			for k, want := range map[string]string{
				"Filename": d.Path, "Size": strconv.Itoa(len(deb)), "SHA256": sha(deb),
				"MD5sum": hex.EncodeToString(m[:]), "Version": d.Version,
			} {
				if got, _ := p.Get(k); got != want {
					t.Errorf("%s: %s = %q, want %q", name, k, got, want)
				}
			}
			var order []string
			for _, f := range p {
				order = append(order, f.Name)
			}
			wantOrder := []string{"Package", "Version", "Architecture", "Maintainer", "Installed-Size"}
			wantTail := []string{"Filename", "Size", "MD5sum", "SHA1", "SHA256", "Section", "Priority", "Description"}
			if len(order) < len(wantOrder)+len(wantTail) || !slices.Equal(order[:5], wantOrder) ||
				!slices.Equal(order[len(order)-len(wantTail):], wantTail) {
				t.Errorf("%s: field order %v", name, order)
			}
		}
		// other-arch is arm64: in the pool, not in the amd64 index.
		if want := []string{"big", "docs", "hello", "libtiny1"}; !slices.Equal(names, want) {
			t.Errorf("Packages lists %v, want %v", names, want)
		}
		if _, err := os.Stat(r.Path(r.Debs["other-arch"].Path)); err != nil {
			t.Error(err)
		}
	})

	t.Run("pool layout", func(t *testing.T) {
		for name, want := range map[string]string{
			"hello":    "pool/main/h/hello/hello_2.10-3_amd64.deb",
			"libtiny1": "pool/main/libt/libtiny1/libtiny1_1%3a0.5_amd64.deb",
			"docs":     "pool/main/d/docs/docs_1.0_all.deb",
		} {
			if got := r.Debs[name].Path; got != want {
				t.Errorf("%s at %s, want %s", name, got, want)
			}
		}
	})

	t.Run("deb contents", func(t *testing.T) {
		testrepo.RequireTools(t, "dpkg-deb")
		d := r.Debs["hello"]
		dir := t.TempDir()
		if out, err := exec.Command("dpkg-deb", "--extract", r.Path(d.Path), dir).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb --extract: %v: %s", err, out)
		}
		payload := read(t, filepath.Join(dir, "usr/share/hello/payload.bin"))
		if !bytes.Equal(payload, pkgs[0].Payload()) {
			t.Error("payload in .deb differs from Package.Payload()")
		}
	})
}

func TestDebsAreDeterministic(t *testing.T) {
	t.Parallel()
	testrepo.RequireTools(t, "dpkg-deb")
	p := testrepo.Package{Name: "same", Version: "1", Arch: "amd64", Size: 5000, Seed: 7}
	var sums []string
	for i := range 2 {
		out := filepath.Join(t.TempDir(), "x.deb")
		if err := testrepo.BuildDeb(context.Background(), withCompression(p, "gzip"), out); err != nil {
			t.Fatal(err)
		}
		d, err := testrepo.ScanDeb(context.Background(), out, "x.deb")
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, d.SHA256)
		_ = i
	}
	if sums[0] != sums[1] {
		t.Errorf("same package built twice: %s vs %s", sums[0], sums[1])
	}
	q := p
	q.Seed = 8
	if bytes.Equal(p.Payload(), q.Payload()) {
		t.Error("different seeds gave the same payload")
	}
	if len(p.Payload()) != 5000 {
		t.Errorf("payload is %d bytes, want 5000", len(p.Payload()))
	}
}

func withCompression(p testrepo.Package, c string) testrepo.Package { p.Compression = c; return p }

func TestBuildRejectsBadPackages(t *testing.T) {
	t.Parallel()
	testrepo.RequireTools(t, "gpg", "dpkg-deb")
	key := testrepo.NewKey(t, "k")
	for _, tc := range []struct {
		name string
		p    testrepo.Package
	}{
		{"no name", testrepo.Package{}},
		{"upper case", testrepo.Package{Name: "Hello"}},
		{"space in version", testrepo.Package{Name: "a", Version: "1 2"}},
		{"negative size", testrepo.Package{Name: "a", Size: -1}},
		{"bad compression", testrepo.Package{Name: "a", Compression: "zip"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := testrepo.BuildDir(t.TempDir(), testrepo.Options{Key: key, Packages: []testrepo.Package{tc.p}})
			if err == nil {
				t.Fatal("BuildDir accepted an invalid package")
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestResign(t *testing.T) {
	t.Parallel()
	date := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r := testrepo.Build(t, testrepo.Options{Packages: pkgs[:1], Date: date})
	if !r.Date.Equal(date) {
		t.Fatalf("Date = %v, want %v", r.Date, date)
	}
	oldPackages := r.Indexes["main/binary-amd64/Packages.xz"]
	if err := r.Add(testrepo.Package{Name: "hello", Version: "2.11-1", Size: 10, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	// Asking for an older date still moves the date forward.
	if err := r.Resign(testrepo.WithDate(date.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	if !r.Date.After(date) {
		t.Errorf("Resign moved Date from %v to %v", date, r.Date)
	}
	if err := gpgv(t, r.Key.KeyringPath, r.Path(r.DistPath("InRelease"))); err != nil {
		t.Fatal(err)
	}
	ps, err := testrepo.ParseParagraphs(string(read(t, r.Path(r.PackagesPath("")))))
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, p := range ps {
		v, _ := p.Get("Version")
		versions = append(versions, v)
	}
	if !slices.Equal(versions, []string{"2.10-3", "2.11-1"}) {
		t.Errorf("Packages versions %v, want both", versions)
	}
	if r.Debs["hello"].Version != "2.11-1" {
		t.Errorf("Debs[hello] is %s, want the newest", r.Debs["hello"].Version)
	}
	// The old index stays reachable by hash, as on a mirror.
	if _, err := os.Stat(r.Path(r.DistPath("main/binary-amd64/by-hash/SHA256/" + oldPackages.SHA256))); err != nil {
		t.Errorf("old by-hash index gone: %v", err)
	}
	if r.Indexes["main/binary-amd64/Packages.xz"].SHA256 == oldPackages.SHA256 {
		t.Error("Packages.xz unchanged after adding a version")
	}

	// Re-signing with another key: the old key no longer verifies.
	other := testrepo.NewKey(t, "other")
	oldKeyring := r.Key.KeyringPath
	if err := r.Resign(testrepo.WithKey(other)); err != nil {
		t.Fatal(err)
	}
	if r.Key != other {
		t.Error("r.Key is not the new signing key")
	}
	if err := gpgv(t, oldKeyring, r.Path(r.DistPath("InRelease"))); err == nil {
		t.Error("InRelease signed by the new key verified with the old keyring")
	}
	if err := gpgv(t, other.KeyringPath, r.Path(r.DistPath("InRelease"))); err != nil {
		t.Error(err)
	}
}

func TestSignatureVariants(t *testing.T) {
	t.Parallel()
	key := testrepo.NewKey(t, "variants")
	for _, tc := range []struct {
		name        string
		opts        testrepo.Options
		inRelease   bool
		releaseGPG  bool
		byHash      bool
		plainOnDisk bool
	}{
		{"default", testrepo.Options{}, true, true, true, true},
		{"no InRelease", testrepo.Options{NoInRelease: true}, false, true, true, true},
		{"no Release.gpg", testrepo.Options{NoReleaseGPG: true}, true, false, true, true},
		{"no by-hash, xz only", testrepo.Options{NoByHash: true, Compressions: []string{".xz"}}, true, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Key = key
			tc.opts.Packages = pkgs[:1]
			r := testrepo.Build(t, tc.opts)
			exists := func(rel string) bool { _, err := os.Stat(r.Path(rel)); return err == nil }
			if got := exists(r.DistPath("InRelease")); got != tc.inRelease {
				t.Errorf("InRelease exists = %v", got)
			}
			if got := exists(r.DistPath("Release.gpg")); got != tc.releaseGPG {
				t.Errorf("Release.gpg exists = %v", got)
			}
			if got := exists(r.DistPath("main/binary-amd64/by-hash")); got != tc.byHash {
				t.Errorf("by-hash exists = %v", got)
			}
			if got := strings.Contains(r.Release, "Acquire-By-Hash: yes"); got != tc.byHash {
				t.Errorf("Acquire-By-Hash in Release = %v", got)
			}
			if got := exists(r.PackagesPath("")); got != tc.plainOnDisk {
				t.Errorf("plain Packages exists = %v", got)
			}
			// The plain index is listed either way, as in Debian.
			if !strings.Contains(r.Release, " main/binary-amd64/Packages\n") {
				t.Error("Release does not list the plain Packages")
			}
		})
	}
}

func TestBuildDirOwnsItsKey(t *testing.T) {
	t.Parallel()
	testrepo.RequireTools(t, "gpg", "gpgconf", "dpkg-deb")
	r, err := testrepo.BuildDir(t.TempDir(), testrepo.Options{Packages: pkgs[:1]})
	if err != nil {
		t.Fatal(err)
	}
	home := r.Key.Home
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("key home %s still there after Close (%v)", home, err)
	}
	if _, err := os.Stat(r.Path(r.DistPath("InRelease"))); err != nil {
		t.Errorf("Close removed repository files: %v", err)
	}
}

// TestPackagesMatchDpkgScanpackages compares the Packages index with what
// the real dpkg-scanpackages writes for the same pool, byte for byte. It
// runs where dpkg-dev is installed (testrepo itself does not need it).
func TestPackagesMatchDpkgScanpackages(t *testing.T) {
	t.Parallel()
	testtool.Need(t, "dpkg-scanpackages", "dpkg-dev")
	r := testrepo.Build(t, testrepo.Options{Packages: pkgs})
	cmd := exec.Command("dpkg-scanpackages", "--arch", r.Arch, "pool")
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-scanpackages: %v", err)
	}
	got := read(t, r.Path(r.PackagesPath("")))
	if !bytes.Equal(got, want) {
		t.Errorf("Packages differs from dpkg-scanpackages output.\ngot:\n%s\nwant:\n%s", got, want)
	}
}
