package target

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, uri string
		url       string
		err       error
	}{
		{"forward proxy", "http://Deb.Example.ORG/debian/dists/bookworm/InRelease", "http://deb.example.org/debian/dists/bookworm/InRelease", nil},
		{"prefix", "/deb.example.org/debian/dists/bookworm/InRelease", "http://deb.example.org/debian/dists/bookworm/InRelease", nil},
		{"prefix default port folded", "/deb.example.org:80/debian/pool/main/h/hello/hello_1_amd64.deb", "http://deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", nil},
		{"prefix https", "/https/deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", "https://deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", nil},
		{"https default port folded", "https://deb.example.org:443/x/dists/s/Release.gpg", "https://deb.example.org/x/dists/s/Release.gpg", nil},
		{"loopback origin with port", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", nil},
		{"prefix loopback with port", "/127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", nil},
		{"by-hash", "/deb.example.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/abcd", "http://deb.example.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/abcd", nil},
		{"translation", "http://deb.example.org/debian/dists/bookworm/main/i18n/Translation-en.bz2", "http://deb.example.org/debian/dists/bookworm/main/i18n/Translation-en.bz2", nil},
		{"source tarball", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", nil},
		{"dsc", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3.dsc", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3.dsc", nil},
		{"escaped path", "http://deb.example.org/debian/pool/main/libf/libfoo%2b%2b/libfoo++_1_amd64.deb", "http://deb.example.org/debian/pool/main/libf/libfoo++/libfoo++_1_amd64.deb", nil},
		{"urpmi synthesis", "/mirror.example.org/mageia/distrib/9/x86_64/media/core/release/media_info/synthesis.hdlist.cz", "http://mirror.example.org/mageia/distrib/9/x86_64/media/core/release/media_info/synthesis.hdlist.cz", nil},
		{"urpmi versioned", "/mirror.example.org/m/media/core/release/media_info/20240101-120000-synthesis.hdlist.cz", "http://mirror.example.org/m/media/core/release/media_info/20240101-120000-synthesis.hdlist.cz", nil},
		{"rpm", "http://mirror.example.org/m/media/core/release/foo-1.0-1.mga9.x86_64.rpm", "http://mirror.example.org/m/media/core/release/foo-1.0-1.mga9.x86_64.rpm", nil},
		{"repomd", "http://mirror.example.org/m/media/core/release/repodata/repomd.xml", "http://mirror.example.org/m/media/core/release/repodata/repomd.xml", nil},
		{"dotdot refused", "/deb.example.org/debian/../etc/passwd.deb", "", ErrBadTarget},
		{"escaped dotdot refused", "http://deb.example.org/debian/%2e%2e/x.deb", "", ErrBadTarget},
		{"query refused", "http://deb.example.org/x.deb?a=b", "", ErrNotAllowed},
		{"ftp refused", "ftp://deb.example.org/x.deb", "", ErrBadTarget},
		{"credentials refused", "http://user:pw@deb.example.org/x.deb", "", ErrBadTarget},
		{"prefix without host", "/debian/dists/bookworm/InRelease", "", ErrBadTarget},
		{"bad port", "/deb.example.org:99999/x.deb", "", ErrBadTarget},
		{"empty", "", "", ErrBadTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.uri)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse(%q) error = %v, want %v", tt.uri, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.uri, err)
			}
			if got.URL != tt.url {
				t.Fatalf("Parse(%q) = %s, want %s", tt.uri, got.URL, tt.url)
			}
		})
	}
}

// The same file reached in either mode has one cache key.
func TestParseModesAgree(t *testing.T) {
	t.Parallel()
	a, err := Parse("http://127.0.0.1:8080/r/pool/main/a/a_1_amd64.deb")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("/127.0.0.1:8080/r/pool/main/a/a_1_amd64.deb")
	if err != nil {
		t.Fatal(err)
	}
	if a.URL != b.URL {
		t.Fatalf("forward %q != prefix %q", a.URL, b.URL)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"http://deb.example.org/debian/dists/bookworm/InRelease",
		"/deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb",
		"/https/h.example/x/media_info/MD5SUM",
		"http://[::1]:8080/r/repodata/repomd.xml",
		"/a.b/../x.deb", "http://x/%zz.deb", "/h.example:0/x.rpm",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		got, err := Parse(uri)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Parse(%q): unclassified error %v", uri, err)
			}
			return
		}
		if strings.Contains(got.Path, "/../") || strings.HasSuffix(got.Path, "/..") {
			t.Fatalf("Parse(%q) kept a '..': %q", uri, got.Path)
		}
		if !strings.HasPrefix(got.URL, "http://") && !strings.HasPrefix(got.URL, "https://") {
			t.Fatalf("Parse(%q) = %q: not http(s)", uri, got.URL)
		}
		// Canonical URLs are fixed points.
		again, err := Parse(got.URL)
		if err != nil || again.URL != got.URL {
			t.Fatalf("canonical %q re-parses to %q, %v", got.URL, again.URL, err)
		}
	})
}

// Issue 15 item 2: a prefix written with the scheme's "://" is refused with
// the form to write instead.
func TestParseSchemeInPrefixHint(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]string{
		"/https://deb.example.org/debian/dists/bookworm/InRelease": "write the prefix as /https/deb.example.org/...",
		"/https:/deb.example.org/debian/dists/bookworm/InRelease":  "write the prefix as /https/deb.example.org/...",
		"/http://deb.example.org/debian/pool/main/h/hello/h.deb":   "write the prefix as /deb.example.org/...",
	} {
		_, err := Parse(uri)
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want ErrBadTarget saying %q", uri, err, want)
		}
	}
}
