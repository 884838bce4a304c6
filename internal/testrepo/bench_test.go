package testrepo_test

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// BenchmarkBuild50MB measures building a signed repository with one 50 MiB
// package, the size the proxy's herd and throughput tests use.
func BenchmarkBuild50MB(b *testing.B) {
	testrepo.RequireTools(b, "gpg", "gpgconf", "dpkg-deb")
	key := testrepo.NewKey(b, "bench")
	b.SetBytes(50 << 20)
	for i := 0; b.Loop(); i++ {
		r, err := testrepo.BuildDir(filepath.Join(b.TempDir(), "repo"), testrepo.Options{
			Key: key, Packages: []testrepo.Package{{Name: "big", Size: 50 << 20, Seed: int64(i)}},
		})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkOriginGet measures serving a 16 MiB file over loopback.
func BenchmarkOriginGet(b *testing.B) {
	dir := b.TempDir()
	r, err := testrepo.BuildDir(dir, testrepo.Options{Packages: []testrepo.Package{{Name: "big", Size: 16 << 20}}})
	if err != nil {
		b.Skip(err)
	}
	defer r.Close()
	o, err := testrepo.ServeDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Stop()
	url := o.URL + "/" + r.Debs["big"].Path
	b.SetBytes(r.Debs["big"].Size)
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
