package apt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func TestParsePackagesGolden(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/Packages")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	err = ParsePackages(f, func(p *Package) error {
		fmt.Fprintf(&out, "%s %s %s %s %d %s\n", p.Name, p.Version, p.Architecture, p.Filename, p.Size, hex.EncodeToString(p.SHA256))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "Packages.golden", out.Bytes())
}

const testSum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func stanza(fields ...string) string { return strings.Join(fields, "\n") + "\n" }

func TestParsePackagesErrors(t *testing.T) {
	t.Parallel()
	ok := stanza("Package: a", "Filename: pool/a.deb", "Size: 1", "SHA256: "+testSum)
	tests := []struct {
		name, in, want string
	}{
		{"no-filename", ok + "\n" + stanza("Package: b", "Size: 1", "SHA256: "+testSum), "stanza at line 6 (package b): no Filename field"},
		{"no-size", stanza("Package: b", "Filename: pool/b.deb", "SHA256: "+testSum), "no Size field"},
		{"no-sha256", stanza("Package: b", "Filename: pool/b.deb", "Size: 1", "MD5sum: d41d8cd98f00b204e9800998ecf8427e"), "no SHA256 field"},
		{"no-package", stanza("Filename: pool/b.deb", "Size: 1", "SHA256: "+testSum), "no Package field"},
		{"dotdot", stanza("Package: b", "Filename: pool/../../../etc/passwd", "Size: 1", "SHA256: "+testSum), "line 2: Filename: unsafe path"},
		{"dotdot-end", stanza("Package: b", "Filename: pool/..", "Size: 1", "SHA256: "+testSum), "unsafe path"},
		{"absolute", stanza("Package: b", "Filename: /etc/passwd", "Size: 1", "SHA256: "+testSum), "absolute"},
		{"backslash", stanza("Package: b", "Filename: pool\\..\\x.deb", "Size: 1", "SHA256: "+testSum), "backslash"},
		{"dot-only", stanza("Package: b", "Filename: ./", "Size: 1", "SHA256: "+testSum), "names no file"},
		{"empty-filename", stanza("Package: b", "Filename:", "Size: 1", "SHA256: "+testSum), "empty"},
		{"bad-size", stanza("Package: b", "Filename: pool/b.deb", "Size: 12x", "SHA256: "+testSum), "line 3: Size"},
		{"negative-size", stanza("Package: b", "Filename: pool/b.deb", "Size: -1", "SHA256: "+testSum), "line 3: Size"},
		{"huge-size", stanza("Package: b", "Filename: pool/b.deb", "Size: 99999999999999999999", "SHA256: "+testSum), "line 3: Size"},
		{"short-sha", stanza("Package: b", "Filename: pool/b.deb", "Size: 1", "SHA256: abcd"), "line 4: SHA256"},
		{"bad-sha", stanza("Package: b", "Filename: pool/b.deb", "Size: 1", "SHA256: "+strings.Repeat("g", 64)), "not hexadecimal"},
		{"repeated-filename", stanza("Package: b", "Filename: pool/b.deb", "Filename: pool/c.deb", "Size: 1", "SHA256: "+testSum), "Filename repeated on line 3"},
		{"repeated-sha-case", stanza("Package: b", "SHA256: "+testSum, "sha256: "+testSum, "Filename: pool/b.deb", "Size: 1"), "repeated"},
		{"leading-continuation", " orphan\n" + ok, "line 1: continuation"},
		{"not-a-field", ok + "\n" + "garbage\n", "line 6"},
		{"armored", "-----BEGIN PGP SIGNED MESSAGE-----\n", "clearsigned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 0
			err := ParsePackages(strings.NewReader(tc.in), func(*Package) error { n++; return nil })
			if err == nil {
				t.Fatalf("no error after %d stanzas", n)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParsePackagesTolerates(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300<<10) // longer than the read buffer
	tests := []struct {
		name string
		in   string
		n    int
	}{
		{"empty", "", 0},
		{"only-blank-lines", "\n\n \n\t\n", 0},
		{"crlf", "Package: a\r\nFilename: pool/a.deb\r\nSize: 1\r\nSHA256: " + testSum + "\r\n\r\n", 1},
		{"no-final-newline", "Package: a\nFilename: pool/a.deb\nSize: 1\nSHA256: " + testSum, 1},
		{"many-blank-lines", "\n\n" + stanza("Package: a", "Filename: a.deb", "Size: 1", "SHA256: "+testSum) + "\n\n\n" + stanza("Package: b", "Filename: b.deb", "Size: 2", "SHA256: "+testSum), 2},
		{"blank-line-with-spaces", stanza("Package: a", "Filename: a.deb", "Size: 1", "SHA256: "+testSum) + "  \n" + stanza("Package: b", "Filename: b.deb", "Size: 2", "SHA256: "+testSum), 2},
		{"long-description", stanza("Package: a", "Description: "+long, " "+long, "Filename: a.deb", "Size: 1", "SHA256: "+testSum), 1},
		{"long-unknown-field", stanza("Package: a", "Provides: "+long, "Filename: a.deb", "Size: 1", "SHA256: "+testSum), 1},
		{"comment", stanza("# comment", "Package: a", "Filename: a.deb", "Size: 1", "SHA256: "+testSum), 1},
		{"lower-case-names", stanza("package: a", "filename: a.deb", "size: 1", "sha256: "+testSum), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 0
			err := ParsePackages(strings.NewReader(tc.in), func(p *Package) error {
				n++
				if p.Name == "" || p.Filename == "" || len(p.SHA256) != 32 {
					t.Errorf("incomplete %+v", p)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.n {
				t.Errorf("%d stanzas, want %d", n, tc.n)
			}
		})
	}
}

func TestParsePackagesStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	in := stanza("Package: a", "Filename: a.deb", "Size: 1", "SHA256: "+testSum) + "\n" + stanza("Package: b", "Filename: b.deb", "Size: 1", "SHA256: "+testSum)
	stop := errors.New("stop")
	n := 0
	err := ParsePackages(strings.NewReader(in), func(*Package) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("err = %v after %d calls; want the callback's error, unwrapped, after 1", err, n)
	}
}

// Fields of one stanza never leak into the next.
func TestParsePackagesResetsBetweenStanzas(t *testing.T) {
	t.Parallel()
	in := stanza("Package: a", "Version: 1", "Architecture: amd64", "Filename: a.deb", "Size: 5", "SHA256: "+testSum) + "\n" +
		stanza("Package: b", "Filename: b.deb", "Size: 7", "SHA256: "+strings.Repeat("1", 64))
	var got []Package
	err := ParsePackages(strings.NewReader(in), func(p *Package) error {
		c := *p
		c.SHA256 = bytes.Clone(p.SHA256)
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Version != "" || got[1].Architecture != "" || got[1].Size != 7 || got[0].SHA256[0] != 0xe3 || got[1].SHA256[0] != 0x11 {
		t.Errorf("got %+v", got)
	}
}

// The index apt itself downloaded, if this machine has one: every stanza
// parses. apt stores lists lz4- or otherwise compressed on some systems.
func TestParseRealPackagesLists(t *testing.T) {
	t.Parallel()
	lists := realLists(t, "*_Packages*")
	for _, p := range lists {
		t.Run(p, func(t *testing.T) {
			rc := openList(t, p)
			defer rc.Close()
			n := 0
			if err := ParsePackages(rc, func(*Package) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Error("no stanza")
			}
			t.Logf("%d packages", n)
		})
	}
}

// genPackages writes n synthetic stanzas shaped like Debian's.
func genPackages(w io.Writer, n int) {
	desc := " " + strings.Repeat("A long description line of a package. ", 2) + "\n"
	for i := range n {
		fmt.Fprintf(w, "Package: package-%d\nSource: src-%d\nVersion: 1.%d.0-%d+deb12u1\nInstalled-Size: %d\n"+
			"Maintainer: Debian Maintainers <maint@example.org>\nArchitecture: amd64\n"+
			"Depends: libc6 (>= 2.34), libfoo%d (>= 1.0), libbar (<< 3)\n"+
			"Description: synthetic package %d\n%s%s .\n%s"+
			"Homepage: https://example.org/p%d\nDescription-md5: %032x\nSection: misc\nPriority: optional\n"+
			"Filename: pool/main/p/package-%d/package-%d_1.%d.0-%d+deb12u1_amd64.deb\nSize: %d\n"+
			"MD5sum: %032x\nSHA256: %064x\n\n",
			i, i, i, i%7, 100+i, i%13, i, desc, desc, desc, i, i, i, i, i, i%7, 1000+i, i, i)
	}
}

func BenchmarkParsePackages(b *testing.B) {
	var buf bytes.Buffer
	genPackages(&buf, 60000)
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := ParsePackages(bytes.NewReader(data), func(*Package) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != 60000 {
			b.Fatalf("%d stanzas", n)
		}
	}
}
