package origin

import (
	"slices"
	"testing"
)

func TestCanonicalPrefix(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://deb.example.org/debian":              "http://deb.example.org/debian",
		"http://deb.example.org/debian/":             "http://deb.example.org/debian",
		"HTTP://Deb.Example.ORG:80/debian/":          "http://deb.example.org/debian",
		"https://deb.example.org:443/debian":         "https://deb.example.org/debian",
		"https://deb.example.org:80/debian":          "https://deb.example.org:80/debian",
		"http://deb.example.org.:8080/debian":        "http://deb.example.org:8080/debian",
		"http://deb.example.org":                     "http://deb.example.org",
		"http://deb.example.org/":                    "http://deb.example.org",
		"http://deb.example.org//debian//./x/":       "http://deb.example.org/debian/x",
		"http://deb.example.org/a%20b":               "http://deb.example.org/a%20b",
		"http://deb.example.org/a b":                 "http://deb.example.org/a%20b",
		"http://[::1]:8080/debian":                   "http://[::1]:8080/debian",
		"http://[2001:DB8::1]/debian":                "http://[2001:db8::1]/debian",
		"http://10.0.0.5/mageia":                     "http://10.0.0.5/mageia",
		"http://localhost/debian":                    "http://localhost/debian",
		"https://mirror.example.net/fedora/releases": "https://mirror.example.net/fedora/releases",
	} {
		got, err := CanonicalPrefix(in)
		if err != nil || got != want {
			t.Errorf("CanonicalPrefix(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "deb.example.org/debian", "ftp://deb.example.org/debian", "http://", "http:///debian",
		"http://user:pw@deb.example.org/debian", "http://deb.example.org/debian?x=1", "http://deb.example.org/debian#f",
		"http://deb.example.org:0/debian", "http://deb.example.org:99999/debian",
		"http://deb.example.org/a/../b", "http://nodot/debian", "http://bad_host!.org/x", "mailto:x@example.org",
	} {
		if got, err := CanonicalPrefix(bad); err == nil {
			t.Errorf("CanonicalPrefix(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseMirrors(t *testing.T) {
	t.Parallel()
	m, err := ParseMirrors([]string{
		"http://Deb.Example.org/debian/=https://mirror.example.net/debian/, http://10.0.0.5:8080/debian",
		"http://deb.example.org/debian=http://third.example.com/debian",
		"http://deb.example.org/debian-security=http://sec.example.com/debian-security",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"http://deb.example.org/debian":          {"https://mirror.example.net/debian", "http://10.0.0.5:8080/debian", "http://third.example.com/debian"},
		"http://deb.example.org/debian-security": {"http://sec.example.com/debian-security"},
	}
	if len(m) != len(want) {
		t.Fatalf("ParseMirrors = %v, want %v", m, want)
	}
	for k, v := range want {
		if !slices.Equal(m[k], v) {
			t.Errorf("mirrors of %s = %v, want %v", k, m[k], v)
		}
	}
	for _, bad := range []string{"http://a.example.org", "=http://b.example.org", "http://a.example.org=", "http://a.example.org=ftp://b.example.org",
		"http://a.example.org=http://b.example.org,"} {
		if _, err := ParseMirrors([]string{bad}); err == nil {
			t.Errorf("ParseMirrors(%q) accepted", bad)
		}
	}
}

// Mirrors lists the URL first, then the alternatives of its longest prefix
// only, and never matches a prefix that ends inside a path segment.
func TestMirrors(t *testing.T) {
	t.Parallel()
	m, err := ParseMirrors([]string{
		"http://deb.example.org=http://all.example.com",
		"http://deb.example.org/debian=http://m1.example.com/debian,https://m2.example.com/d",
		"http://deb.example.org/debian/pool=http://pool.example.com/p",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, Config{Mirrors: m, Egress: Egress{AllowLoopback: true}})
	for u, want := range map[string][]string{
		"http://deb.example.org/debian/dists/stable/InRelease": {"http://deb.example.org/debian/dists/stable/InRelease",
			"http://m1.example.com/debian/dists/stable/InRelease", "https://m2.example.com/d/dists/stable/InRelease"},
		"http://deb.example.org/debian/pool/main/h/hello.deb": {"http://deb.example.org/debian/pool/main/h/hello.deb",
			"http://pool.example.com/p/main/h/hello.deb"},
		"http://deb.example.org/debian-security/dists/x/InRelease": {"http://deb.example.org/debian-security/dists/x/InRelease",
			"http://all.example.com/debian-security/dists/x/InRelease"},
		"http://other.example.org/debian/dists/x/InRelease": {"http://other.example.org/debian/dists/x/InRelease"},
		"http://deb.example.org/debian":                     {"http://deb.example.org/debian", "http://all.example.com/debian"},
	} {
		if got := c.Mirrors(u); !slices.Equal(got, want) {
			t.Errorf("Mirrors(%s) = %v, want %v", u, got, want)
		}
	}
	if got := newClient(t, Config{Egress: Egress{AllowLoopback: true}}).Mirrors("http://a.example.org/x"); !slices.Equal(got, []string{"http://a.example.org/x"}) {
		t.Errorf("no mirrors: %v", got)
	}
}
