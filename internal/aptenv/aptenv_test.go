package aptenv_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// testPackages are small except one of a few MB, so a run takes seconds.
var testPackages = []testrepo.Package{
	{Name: "hello", Version: "2.10-3", Size: 3000, Seed: 1},
	{Name: "big", Version: "1.0", Size: 4 << 20, Seed: 2},
	{Name: "libtiny1", Version: "1:0.5", Size: 10, Seed: 3, Depends: "hello (>= 2.10)"},
	{Name: "docs", Version: "3", Arch: "all", Size: 100, Seed: 4},
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func newRepo(t *testing.T, opts testrepo.Options) (*testrepo.Repo, *testrepo.Origin) {
	t.Helper()
	if opts.Packages == nil {
		opts.Packages = testPackages
	}
	r := testrepo.Build(t, opts)
	return r, testrepo.Serve(t, r.Dir)
}

// countPaths counts the origin's GETs whose path contains sub.
func countPaths(o *testrepo.Origin, sub string) int {
	n := 0
	for _, r := range o.Log() {
		if r.Method == "GET" && strings.Contains(r.Path, sub) {
			n++
		}
	}
	return n
}

func source(r *testrepo.Repo, o *testrepo.Origin) aptenv.Source {
	return aptenv.Source{URL: o.URL, Suite: r.Suite, Components: []string{r.Component}, Keyring: r.Key.KeyringPath}
}

// TestUpdateAndDownloadDirect runs the real apt-get against a real signed
// repository: update verifies InRelease with the repository's key, and the
// downloaded .deb files are byte-identical to the repository's.
func TestUpdateAndDownloadDirect(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testrepo.Options
		// index is the Packages variant apt must fetch.
		index string
		// keyAlgo, when set, signs with a new key of that algorithm.
		keyAlgo string
	}{
		{name: "by-hash xz", opts: testrepo.Options{}, index: "/by-hash/SHA256/"},
		{name: "no by-hash gz only", opts: testrepo.Options{NoByHash: true, Compressions: []string{".gz"}}, index: "/Packages.gz"},
		{name: "detached signature only", opts: testrepo.Options{NoInRelease: true, Suite: "bookworm"}, index: "/by-hash/SHA256/"},
		{name: "valid-until", opts: testrepo.Options{ValidUntil: 24 * time.Hour}, index: "/by-hash/SHA256/"},
		{name: "rsa3072 key", index: "/by-hash/SHA256/", keyAlgo: "rsa3072"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.keyAlgo != "" {
				if testing.Short() {
					t.Skip("RSA key generation takes seconds; skipped in -short mode")
				}
				tc.opts.Key = testrepo.NewKeyAlgo(t, "rsa", tc.keyAlgo)
			}
			r, o := newRepo(t, tc.opts)
			c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{source(r, o)}})
			out, err := c.Update(ctx(t))
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if countPaths(o, tc.index) == 0 {
				t.Errorf("apt fetched no %q; origin log: %+v\napt output:\n%s", tc.index, o.Log(), out)
			}
			if _, err := c.Download(ctx(t), "big", "libtiny1", "docs"); err != nil {
				t.Fatalf("download: %v", err)
			}
			got, err := c.Archives()
			if err != nil {
				t.Fatal(err)
			}
			// libtiny1 depends on hello, so apt fetches hello too.
			want := map[string]string{}
			for _, name := range []string{"big", "libtiny1", "docs", "hello"} {
				d := r.Debs[name]
				want[d.FileName()] = d.SHA256
			}
			if len(got) != len(want) {
				t.Errorf("archives = %v, want %v", got, want)
			}
			for name, sum := range want {
				if got[name] != sum {
					t.Errorf("archive %s: sha256 %q, repository says %q", name, got[name], sum)
				}
			}
			if n := o.Requests(".deb"); n != 4 {
				t.Errorf("origin served %d .deb GETs, want 4", n)
			}
		})
	}
}

// TestTamperedDebFails: a .deb whose bytes differ from Packages makes
// apt-get fail with a hash sum mismatch, and nothing lands in archives.
func TestTamperedDebFails(t *testing.T) {
	r, o := newRepo(t, testrepo.Options{})
	c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{source(r, o)}})
	if _, err := c.Update(ctx(t)); err != nil {
		t.Fatalf("update: %v", err)
	}
	o.Tamper("/"+r.Debs["hello"].Path, func(b []byte) []byte {
		b = append([]byte(nil), b...)
		b[len(b)-1] ^= 0xff
		return b
	})
	_, err := c.Download(ctx(t), "hello")
	if err == nil {
		t.Fatal("apt-get accepted a tampered .deb")
	}
	if !errors.Is(err, aptenv.ErrHashSum) {
		t.Errorf("error %v does not report a hash sum mismatch", err)
	}
	got, aerr := c.Archives()
	if aerr != nil {
		t.Fatal(aerr)
	}
	if len(got) != 0 {
		t.Errorf("archives after failed download = %v, want none", got)
	}
}

// TestUpdateRejectsBadRoots: apt-get update must fail when the repository
// is signed by a key the source does not trust, when a signature is
// tampered with, when it is unsigned, and when an index does not match
// Release.
func TestUpdateRejectsBadRoots(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  testrepo.Options
		setup func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin)
		want  error
	}{
		{
			name: "signed by an untrusted key",
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {
				if err := r.Resign(testrepo.WithKey(testrepo.NewKey(t, "intruder"))); err != nil {
					t.Fatal(err)
				}
			},
			want: aptenv.ErrSignature,
		},
		{
			name: "InRelease body altered",
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {
				o.Tamper("/InRelease", func(b []byte) []byte {
					return []byte(strings.Replace(string(b), "Label: pkgswarm-test", "Label: pkgswarm-evil", 1))
				})
				o.FailWith("/Release.gpg", 404)
			},
			want: aptenv.ErrSignature,
		},
		{
			name: "unsigned",
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {
				for _, f := range []string{"InRelease", "Release.gpg"} {
					if err := os.Remove(r.Path(r.DistPath(f))); err != nil {
						t.Fatal(err)
					}
				}
			},
			want: aptenv.ErrSignature,
		},
		{
			name:  "expired (Valid-Until passed)",
			opts:  testrepo.Options{Date: time.Now().Add(-48 * time.Hour), ValidUntil: 24 * time.Hour},
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {},
			want:  aptenv.ErrExpired,
		},
		{
			name:  "dated in the future",
			opts:  testrepo.Options{Date: time.Now().Add(48 * time.Hour)},
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {},
			want:  aptenv.ErrExpired,
		},
		{
			name: "Packages index altered",
			opts: testrepo.Options{NoByHash: true, Compressions: []string{""}},
			setup: func(t *testing.T, r *testrepo.Repo, o *testrepo.Origin) {
				o.Tamper("/"+r.PackagesPath(""), func(b []byte) []byte {
					return []byte(strings.ReplaceAll(string(b), "Package: hello", "Package: hellp"))
				})
			},
			want: aptenv.ErrHashSum,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Packages = testPackages[:1]
			r, o := newRepo(t, tc.opts)
			src := source(r, o) // trusts the key the repository was built with
			tc.setup(t, r, o)
			c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{src}})
			out, err := c.Update(ctx(t))
			if err == nil {
				t.Fatalf("apt-get update succeeded; output:\n%s", out)
			}
			t.Logf("apt-get update failed as it should: %v", err)
			if !errors.Is(err, tc.want) {
				t.Errorf("error does not report %v: %v", tc.want, err)
			}
		})
	}
}

// TestIsolation: the generated configuration names only paths under the
// client's directory for everything apt reads or writes, and apt-get
// itself confirms the effective values.
func TestIsolation(t *testing.T) {
	r, o := newRepo(t, testrepo.Options{Packages: testPackages[:1]})
	c := aptenv.New(t, aptenv.Options{Sources: []aptenv.Source{source(r, o)}, Proxy: "http://127.0.0.1:9"})
	if _, err := c.Run(ctx(t), "check"); err != nil {
		t.Fatalf("apt-get check: %v", err)
	}
	dump, err := c.Config(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"Dir::State::status", "Dir::Etc::SourceList", "Dir::Etc::Parts", "Dir::Etc::main",
		"Dir::Cache::Archives", "Dir::State::Lists", "Dir::Etc::TrustedParts", "Dir::Log"} {
		v, ok := dump[strings.ToLower(key)]
		if !ok {
			t.Errorf("apt-config dump has no %s", key)
			continue
		}
		if !strings.HasPrefix(v, c.Dir) {
			t.Errorf("%s = %q, not under %s", key, v, c.Dir)
		}
	}
	if got := dump[strings.ToLower("Acquire::http::Proxy")]; got != "http://127.0.0.1:9" {
		t.Errorf("Acquire::http::Proxy = %q", got)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "status")); err != nil {
		t.Error(err)
	}
}
