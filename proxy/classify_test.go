package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, uri string
		url       string
		kind      Kind
		err       error
	}{
		{"forward proxy", "http://Deb.Example.ORG/debian/dists/bookworm/InRelease", "http://deb.example.org/debian/dists/bookworm/InRelease", KindRoot, nil},
		{"prefix", "/deb.example.org/debian/dists/bookworm/InRelease", "http://deb.example.org/debian/dists/bookworm/InRelease", KindRoot, nil},
		{"prefix default port folded", "/deb.example.org:80/debian/pool/main/h/hello/hello_1_amd64.deb", "http://deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", KindPackage, nil},
		{"prefix https", "/https/deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", "https://deb.example.org/debian/pool/main/h/hello/hello_1_amd64.deb", KindPackage, nil},
		{"https default port folded", "https://deb.example.org:443/x/dists/s/Release.gpg", "https://deb.example.org/x/dists/s/Release.gpg", KindRoot, nil},
		{"loopback origin with port", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", KindIndex, nil},
		{"prefix loopback with port", "/127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", "http://127.0.0.1:8080/repo/dists/stable/main/binary-amd64/Packages.xz", KindIndex, nil},
		{"by-hash", "/deb.example.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/abcd", "http://deb.example.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/abcd", KindIndex, nil},
		{"translation", "http://deb.example.org/debian/dists/bookworm/main/i18n/Translation-en.bz2", "http://deb.example.org/debian/dists/bookworm/main/i18n/Translation-en.bz2", KindIndex, nil},
		{"source tarball", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", KindPackage, nil},
		{"dsc", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3.dsc", "http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3.dsc", KindPackage, nil},
		{"escaped path", "http://deb.example.org/debian/pool/main/libf/libfoo%2b%2b/libfoo++_1_amd64.deb", "http://deb.example.org/debian/pool/main/libf/libfoo++/libfoo++_1_amd64.deb", KindPackage, nil},
		{"urpmi synthesis", "/mirror.example.org/mageia/distrib/9/x86_64/media/core/release/media_info/synthesis.hdlist.cz", "http://mirror.example.org/mageia/distrib/9/x86_64/media/core/release/media_info/synthesis.hdlist.cz", KindVolatile, nil},
		{"urpmi versioned", "/mirror.example.org/m/media/core/release/media_info/20240101-120000-synthesis.hdlist.cz", "http://mirror.example.org/m/media/core/release/media_info/20240101-120000-synthesis.hdlist.cz", KindImmutable, nil},
		{"rpm", "http://mirror.example.org/m/media/core/release/foo-1.0-1.mga9.x86_64.rpm", "http://mirror.example.org/m/media/core/release/foo-1.0-1.mga9.x86_64.rpm", KindImmutable, nil},
		{"repomd", "http://mirror.example.org/m/media/core/release/repodata/repomd.xml", "http://mirror.example.org/m/media/core/release/repodata/repomd.xml", KindVolatile, nil},
		{"dotdot refused", "/deb.example.org/debian/../etc/passwd.deb", "", 0, ErrBadTarget},
		{"escaped dotdot refused", "http://deb.example.org/debian/%2e%2e/x.deb", "", 0, ErrBadTarget},
		{"not a repository file", "http://www.example.org/index.html", "", 0, ErrNotAllowed},
		{"query refused", "http://deb.example.org/x.deb?a=b", "", 0, ErrNotAllowed},
		{"ftp refused", "ftp://deb.example.org/x.deb", "", 0, ErrBadTarget},
		{"credentials refused", "http://user:pw@deb.example.org/x.deb", "", 0, ErrBadTarget},
		{"prefix without host", "/debian/dists/bookworm/InRelease", "", 0, ErrBadTarget},
		{"bad port", "/deb.example.org:99999/x.deb", "", 0, ErrBadTarget},
		{"empty", "", "", 0, ErrBadTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTarget(tt.uri)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseTarget(%q) error = %v, want %v", tt.uri, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.uri, err)
			}
			if got.URL != tt.url || got.Kind != tt.kind {
				t.Fatalf("ParseTarget(%q) = %s (%v), want %s (%v)", tt.uri, got.URL, got.Kind, tt.url, tt.kind)
			}
		})
	}
}

// The same file reached in either mode has one cache key.
func TestParseTargetModesAgree(t *testing.T) {
	t.Parallel()
	a, err := ParseTarget("http://127.0.0.1:8080/r/pool/main/a/a_1_amd64.deb")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseTarget("/127.0.0.1:8080/r/pool/main/a/a_1_amd64.deb")
	if err != nil {
		t.Fatal(err)
	}
	if a.URL != b.URL {
		t.Fatalf("forward %q != prefix %q", a.URL, b.URL)
	}
}

func TestAptRepo(t *testing.T) {
	t.Parallel()
	repo, rel, ok := aptRepo("http://h/debian/dists/bookworm/main/binary-amd64/Packages.xz")
	if !ok || repo != "http://h/debian/dists/bookworm" || rel != "main/binary-amd64/Packages.xz" {
		t.Fatalf("aptRepo = %q %q %v", repo, rel, ok)
	}
	if got := archiveRoot(repo); got != "http://h/debian" {
		t.Fatalf("archiveRoot = %q", got)
	}
	if _, _, ok := aptRepo("http://h/debian/pool/main/x.deb"); ok {
		t.Fatal("pool path taken for a dists path")
	}
}

func TestOriginsWithMirrors(t *testing.T) {
	t.Parallel()
	m, err := ParseMirrors([]string{"http://a.example.org/debian=http://b.example.org/debian,https://c.example.org/deb/"})
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{Mirrors: m}
	got := c.origins("http://a.example.org/debian/pool/x.deb")
	want := []string{"http://a.example.org/debian/pool/x.deb", "http://b.example.org/debian/pool/x.deb", "https://c.example.org/deb/pool/x.deb"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("origins = %v, want %v", got, want)
	}
	if got := c.origins("http://a.example.org/debianx/pool/x.deb"); len(got) != 1 {
		t.Fatalf("prefix matched a longer path segment: %v", got)
	}
	if _, err := ParseMirrors([]string{"nonsense"}); err == nil {
		t.Fatal("bad mirror spec accepted")
	}
}

func TestClientAllowed(t *testing.T) {
	t.Parallel()
	c := &Config{}
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "[::1]:5000": true, "10.1.2.3:1": true, "192.168.1.1:1": true,
		"172.20.0.1:1": true, "8.8.8.8:1": false, "[2001:db8::1]:1": false, "[::ffff:10.0.0.1]:1": true,
	} {
		if got := c.clientAllowed(addr); got != want {
			t.Errorf("clientAllowed(%s) = %v, want %v", addr, got, want)
		}
	}
	p, err := ParsePrefixes([]string{"127.0.0.1,192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	c = &Config{AllowClients: p}
	if c.clientAllowed("10.0.0.1:1") || !c.clientAllowed("192.0.2.7:1") || !c.clientAllowed("127.0.0.1:9") {
		t.Fatal("explicit allow list not applied")
	}
}

func FuzzParseTarget(f *testing.F) {
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
		got, err := ParseTarget(uri)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("ParseTarget(%q): unclassified error %v", uri, err)
			}
			return
		}
		if strings.Contains(got.Path, "/../") || strings.HasSuffix(got.Path, "/..") {
			t.Fatalf("ParseTarget(%q) kept a '..': %q", uri, got.Path)
		}
		if !strings.HasPrefix(got.URL, "http://") && !strings.HasPrefix(got.URL, "https://") {
			t.Fatalf("ParseTarget(%q) = %q: not http(s)", uri, got.URL)
		}
		// Canonical URLs are fixed points.
		again, err := ParseTarget(got.URL)
		if err != nil || again.URL != got.URL {
			t.Fatalf("canonical %q re-parses to %q, %v", got.URL, again.URL, err)
		}
	})
}
