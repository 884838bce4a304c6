package rpmmd_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmmd"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

const samplePrimary = `<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>foo</name>
  <arch>noarch</arch>
  <version epoch="0" ver="1.0" rel="1.mga9"/>
  <checksum type="sha256" pkgid="YES">9a47b5fbaf710c15ecadb5cd028deb7200aa661762384152a637bb45080b41e1</checksum>
  <summary>test package</summary>
  <size package="11104" installed="5000" archive="5260"/>
  <location href="foo-1.0-1.mga9.noarch.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="foo" flags="EQ" epoch="0" ver="1.0" rel="1.mga9"/></rpm:provides>
    <file>/usr/share/foo/data.bin</file>
  </format>
</package>
<package type="rpm">
  <name>old</name>
  <arch>i586</arch>
  <version epoch="2" ver="0.9" rel="3"/>
  <checksum type="sha">da39a3ee5e6b4b0d3255bfef95601890afd80709</checksum>
  <size package="42"/>
  <location href="Packages/o/old-0.9-3.i586.rpm"/>
</package>
</metadata>
`

const sampleRepomd = `<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">ff4ed04f22d6406636d94366d93217458a7cb518e98da1fee4aa51b00ef0dc1e</checksum>
    <open-checksum type="sha256">d0d09e465113246dfb286f8632ef8dc89043c8dcb99bcd5d2e64d52e4d787d27</open-checksum>
    <location href="repodata/ff4e-primary.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>548</size>
    <open-size>1027</open-size>
  </data>
  <data type="other">
    <checksum type="sha">da39a3ee5e6b4b0d3255bfef95601890afd80709</checksum>
    <location href="repodata/other.xml.gz"/>
    <timestamp>1191855431.46</timestamp>
  </data>
</repomd>
`

// TestRealRepo checks the chain repomd.xml(.asc) -> primary.xml -> rpm on
// a repository made by createrepo_c from rpms made by rpmbuild/rpmsign.
func TestRealRepo(t *testing.T) {
	key := rpmrepo.NewKey(t, "")
	other := rpmrepo.NewKey(t, "")
	tr := rpmrepo.Build(t, rpmrepo.Options{Key: key, SignRepomd: true, Packages: []rpmrepo.Package{
		{Name: "one", Size: 1000, Seed: 1},
		{Name: "two", Version: "3.1", Release: "2.mga9", Epoch: 5, Arch: "x86_64", Size: 5000, Seed: 2},
	}})
	m := tr.Media[0]
	repomdXML, err := os.ReadFile(filepath.Join(m.Dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	asc, err := os.ReadFile(filepath.Join(m.Dir, "repodata", "repomd.xml.asc"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := rpmsig.LoadKeys(key.Armored)
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := rpmsig.LoadKeys(other.Armored)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("signature", func(t *testing.T) {
		tampered := bytes.Replace(repomdXML, []byte("<revision>"), []byte("<revision>9"), 1)
		tests := []struct {
			name string
			xml  []byte
			asc  []byte
			keys *rpmsig.KeySet
			want error
		}{
			{"good", repomdXML, asc, keys, nil},
			{"binary signature", repomdXML, dearmor(t, asc), keys, nil},
			{"empty signature", repomdXML, nil, keys, rpmmd.ErrBadSignature},
			{"tampered", tampered, asc, keys, rpmmd.ErrBadSignature},
			{"other key", repomdXML, asc, otherKeys, rpmmd.ErrUnknownKey},
			{"garbage signature", repomdXML, []byte("-----BEGIN PGP SIGNATURE-----\n\nxx\n-----END PGP SIGNATURE-----\n"), keys, rpmmd.ErrBadSignature},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r, err := rpmmd.VerifyRepomd(tc.xml, tc.asc, tc.keys.Entities())
				if tc.want == nil {
					if err != nil {
						t.Fatal(err)
					}
					if r.SignerKeyID != strings.ToLower(key.KeyID) {
						t.Errorf("SignerKeyID = %q, want %q", r.SignerKeyID, key.KeyID)
					}
					return
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("VerifyRepomd error = %v, want %v", err, tc.want)
				}
			})
		}
		if _, err := rpmmd.VerifyRepomd(repomdXML, asc, nil); !errors.Is(err, rpmmd.ErrUnknownKey) {
			t.Errorf("nil keyring: %v", err)
		}
	})

	r, err := rpmmd.VerifyRepomd(repomdXML, asc, keys.Entities())
	if err != nil {
		t.Fatal(err)
	}
	prim := r.Find("primary")
	if prim == nil || prim.SHA256 == nil || prim.OpenSHA256 == nil || prim.Size <= 0 || prim.Timestamp == 0 {
		t.Fatalf("primary entry %+v", prim)
	}
	primGz, err := os.ReadFile(filepath.Join(m.Dir, filepath.FromSlash(prim.Location)))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(primGz); !bytes.Equal(sum[:], prim.SHA256) || int64(len(primGz)) != prim.Size {
		t.Fatalf("primary file does not match repomd: sha256 %x size %d, repomd %+v", sum, len(primGz), prim)
	}
	if e, ok := r.Expect(prim.Location); !ok || !bytes.Equal(e.SHA256, prim.SHA256) || e.Size != prim.Size {
		t.Errorf("Expect(%s) = %+v, %v", prim.Location, e, ok)
	}
	rc, err := decompress.Sniff(bytes.NewReader(primGz))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var pkgs []rpmmd.Package
	if err := rpmmd.ParsePrimary(rc, func(p rpmmd.Package) error { pkgs = append(pkgs, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != len(m.Packages) {
		t.Fatalf("%d packages in primary, %d built", len(pkgs), len(m.Packages))
	}
	for _, p := range pkgs {
		b := tr.Package(p.NEVRA())
		if b == nil {
			t.Errorf("primary lists %s, which was not built", p.NEVRA())
			continue
		}
		if !bytes.Equal(p.SHA256, b.SHA256) || p.Size != b.Size || p.Location != b.NEVRA+".rpm" || p.Epoch != map[bool]string{true: "5", false: "0"}[b.Epoch == 5] {
			t.Errorf("primary entry %+v does not match built %s (sha256 %x, size %d)", p, b.NEVRA, b.SHA256, b.Size)
		}
		e, ok := p.Expect(keys)
		if !ok {
			t.Fatalf("no expectation for %s", p.NEVRA())
		}
		f, err := os.Open(b.File)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Check(f); err != nil {
			t.Errorf("Check(%s): %v", b.NEVRA, err)
		}
		f.Close()
		// The same expectation refuses the package re-signed by another key.
		resigned := filepath.Join(t.TempDir(), "x.rpm")
		rpmrepo.Resigned(t, b.File, resigned, other)
		f, err = os.Open(resigned)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Check(f); !errors.Is(err, rpmsig.ErrUnknownKey) {
			t.Errorf("Check(resigned %s) = %v, want ErrUnknownKey", b.NEVRA, err)
		}
		f.Close()
	}
}

func dearmor(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, err := armor.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(blk.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseRepomd(t *testing.T) {
	r, err := rpmmd.ParseRepomd(strings.NewReader(sampleRepomd))
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision != "1700000000" || len(r.Data) != 2 {
		t.Fatalf("parsed %+v", r)
	}
	p := r.Find("primary")
	if hex.EncodeToString(p.SHA256) != "ff4ed04f22d6406636d94366d93217458a7cb518e98da1fee4aa51b00ef0dc1e" || p.Size != 548 || p.OpenSize != 1027 || p.Timestamp != 1700000000 {
		t.Errorf("primary %+v", p)
	}
	o := r.Find("other")
	if o.SHA256 != nil || o.ChecksumType != "sha" || o.Size != -1 || o.Timestamp != 1191855431 {
		t.Errorf("other %+v", o)
	}
	if _, ok := r.Expect("repodata/other.xml.gz"); ok {
		t.Error("Expect trusted a sha1 entry")
	}
	bad := []struct{ name, in, want string }{
		{"not xml", "hello", "parse"},
		{"other root", "<metadata/>", "parse"},
		{"dotdot", strings.Replace(sampleRepomd, "repodata/ff4e", "../ff4e", 1), "location outside"},
		{"absolute", strings.Replace(sampleRepomd, "repodata/ff4e", "/ff4e", 1), "location outside"},
		{"url", strings.Replace(sampleRepomd, "repodata/ff4e", "http://x/ff4e", 1), "location outside"},
		{"short sha256", strings.Replace(sampleRepomd, "ff4ed04f22d6", "", 1), "64 hex"},
		{"dup type", strings.Replace(sampleRepomd, `type="other"`, `type="primary"`, 1), "twice"},
		{"bad size", strings.Replace(sampleRepomd, "<size>548", "<size>-5", 1), "size"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rpmmd.ParseRepomd(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParsePrimary(t *testing.T) {
	var got []rpmmd.Package
	if err := rpmmd.ParsePrimary(strings.NewReader(samplePrimary), func(p rpmmd.Package) error {
		got = append(got, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d packages", len(got))
	}
	if got[0].NEVRA() != "foo-1.0-1.mga9.noarch" || got[0].Size != 11104 || len(got[0].SHA256) != 32 || got[0].Location != "foo-1.0-1.mga9.noarch.rpm" {
		t.Errorf("package 0 %+v", got[0])
	}
	if got[1].SHA256 != nil || got[1].ChecksumType != "sha" || got[1].Epoch != "2" || got[1].Location != "Packages/o/old-0.9-3.i586.rpm" {
		t.Errorf("package 1 %+v", got[1])
	}
	if _, ok := got[1].Expect(nil); ok {
		t.Error("Expect trusted a sha1 package")
	}
	bad := []struct {
		name, in string
		want     error
		text     string
	}{
		{"dotdot", strings.Replace(samplePrimary, `href="Packages/o/`, `href="Packages/../../`, 1), rpmmd.ErrBadLocation, "package #2 (old)"},
		{"xml base", strings.Replace(samplePrimary, `<location href="foo`, `<location xml:base="http://elsewhere/" href="foo`, 1), rpmmd.ErrBadLocation, "package #1"},
		{"no name", strings.Replace(samplePrimary, "<name>foo</name>", "", 1), nil, "missing name"},
		{"truncated between packages", samplePrimary[:strings.LastIndex(samplePrimary, "<package")], nil, "after 1 packages"},
		{"truncated in a package", samplePrimary[:strings.LastIndex(samplePrimary, "<size")], nil, "package #2"},
		{"other root", "<repomd></repomd>", nil, "want <metadata>"},
		{"empty", "", nil, "no <metadata>"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := rpmmd.ParsePrimary(strings.NewReader(tc.in), func(rpmmd.Package) error { return nil })
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func FuzzParseRepomd(f *testing.F) {
	f.Add([]byte(sampleRepomd))
	f.Add([]byte("<repomd><data type=\"x\"><location href=\"a\"/></data></repomd>"))
	f.Add([]byte("<repomd>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r *rpmmd.Repomd
		var err error
		alloc := limittest.Allocs(func() { r, err = rpmmd.ParseRepomd(bytes.NewReader(data)) })
		if max := uint64(16<<20 + 256*len(data)); alloc > max {
			t.Fatalf("allocated %d bytes for %d bytes", alloc, len(data))
		}
		if err != nil {
			if r != nil {
				t.Fatal("a Repomd returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "rpmmd: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		for _, d := range r.Data {
			if d.SHA256 != nil && len(d.SHA256) != 32 {
				t.Fatalf("SHA256 of %d bytes", len(d.SHA256))
			}
			if strings.Contains("/"+d.Location+"/", "/../") || strings.HasPrefix(d.Location, "/") {
				t.Fatalf("accepted location %q", d.Location)
			}
		}
	})
}

func FuzzParsePrimary(f *testing.F) {
	f.Add([]byte(samplePrimary))
	f.Add([]byte("<metadata><package><name>a</name></package></metadata>"))
	f.Add([]byte("<metadata><x><package/></x></metadata>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var err error
		alloc := limittest.Allocs(func() { err = parsePrimaryChecked(t, data) })
		if max := uint64(16<<20 + 256*len(data)); alloc > max {
			t.Fatalf("allocated %d bytes for %d bytes", alloc, len(data))
		}
		if err != nil && !strings.HasPrefix(err.Error(), "rpmmd: ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

// parsePrimaryChecked parses data, failing t on a package that should
// have been refused.
func parsePrimaryChecked(t *testing.T, data []byte) error {
	return rpmmd.ParsePrimary(bytes.NewReader(data), func(p rpmmd.Package) error {
		if p.Name == "" || p.Version == "" || p.Release == "" || p.Arch == "" {
			t.Fatalf("package with empty fields %+v", p)
		}
		if p.SHA256 != nil && len(p.SHA256) != 32 {
			t.Fatalf("SHA256 of %d bytes", len(p.SHA256))
		}
		if strings.Contains("/"+p.Location+"/", "/../") || strings.HasPrefix(p.Location, "/") || p.Location == "" {
			t.Fatalf("accepted location %q", p.Location)
		}
		return nil
	})
}
