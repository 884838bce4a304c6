package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
)

func TestQuickURI(t *testing.T) {
	t.Parallel()
	const ok = "GET http://h/p/x.deb HTTP/1.1\r\nHost: h\r\nUser-Agent: Debian APT-HTTP/1.3 (2.6.1)\r\n\r\n"
	for _, tc := range []struct {
		head string
		uri  string // "" = not quick
	}{
		{ok, "http://h/p/x.deb"},
		{"GET /h/p/x.deb HTTP/1.1\r\nHost: n:3142\r\nConnection: keep-alive\r\n\r\n", "/h/p/x.deb"},
		{"GET http://h/x.deb HTTP/1.1\r\nhost:h\r\nCache-Control: max-age=0\r\n\r\n", "http://h/x.deb"},
		{"GET http://h/x.deb HTTP/1.0\r\nHost: h\r\n\r\n", ""},                         // HTTP/1.0: other keep-alive rules
		{"HEAD http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\n", ""},                        // not a GET
		{"GET http://h/x.deb HTTP/1.1\r\n\r\n", ""},                                    // no Host: net/http's 400
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", ""},              // two Hosts: 400
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nRange: bytes=1-\r\n\r\n", ""},      // 206
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nif-none-match: \"x\"\r\n\r\n", ""}, // 304 perhaps
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: x\r\n\r\n", ""},
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", ""},
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", ""},
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", ""},
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", ""},   // obsolete line folding
		{"GET http://h/x.deb HTTP/1.1\r\nHost : h\r\n\r\n", ""},             // space before the colon: 400
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", ""}, // control byte
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h/evil\r\n\r\n", ""},         // not a plain host
		{"GET http://h/x.deb  HTTP/1.1\r\nHost: h\r\n\r\n", ""},             // two spaces
		{"GET http://h/x\x7f.deb HTTP/1.1\r\nHost: h\r\n\r\n", ""},          // DEL in the URI
		{"GET http://h/x.deb HTTP/1.1\nHost: h\n\n", ""},                    // bare LF
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\nGET", ""},           // bytes after the head
		{"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", ""},
	} {
		u, ok := quickURI([]byte(tc.head))
		if uri := string(u); uri != tc.uri || ok != (tc.uri != "") {
			t.Errorf("quickURI(%q) = %q, %v; want %q", tc.head, uri, ok, tc.uri)
		}
	}
}

// FuzzQuickURI checks the quick lane against net/http: every head it takes
// is one net/http reads as a plain GET of the same URI over HTTP/1.1, with
// no header that would make its answer anything but a whole 200, and whose
// request target pkgswarm's parser reads as net/http does (the lane answers
// only heads both take).
func FuzzQuickURI(f *testing.F) {
	for _, s := range []string{
		"GET http://h/p/x.deb HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /h/p/x.deb HTTP/1.1\r\nHost: n:3142\r\nConnection: keep-alive\r\n\r\n",
		"GET http://[::1]:80/x.deb HTTP/1.1\r\nHost: [::1]\r\nRange: bytes=0-1\r\n\r\n",
		"GET http://h/%2e%2e/x.deb HTTP/1.1\r\nHost: h\r\nX-A: \t b \r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		u, ok := quickURI(head)
		if !ok {
			return
		}
		uri := string(u)
		tg, err := target.Parse(uri) // the lane answers only what this reads
		if err != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("quick lane takes %q, net/http refuses it: %v", head, err)
		}
		if req.Method != http.MethodGet || req.RequestURI != uri || req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Close {
			t.Fatalf("quick lane takes %q as GET %s; net/http reads %s %s HTTP/%d.%d close=%v", head, uri, req.Method, req.RequestURI, req.ProtoMajor, req.ProtoMinor, req.Close)
		}
		for _, h := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "Expect", "Upgrade"} {
			if _, ok := req.Header[h]; ok {
				t.Fatalf("quick lane takes %q, which has %s", head, h)
			}
		}
		if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("quick lane takes %q, which has a body", head)
		}
		if req.URL.IsAbs() {
			// The same origin and path as net/http reads them.
			if h := (&url.URL{Host: tg.Host}).Hostname(); !strings.EqualFold(h, req.URL.Hostname()) {
				t.Fatalf("quick lane reads the host of %q as %q, net/http as %q", uri, h, req.URL.Hostname())
			}
		}
	})
}

// The lane renders its answer's head into the connection's buffer: no
// allocation per hit once the buffer has grown (issue 13: a hit's garbage
// is the collector's work on every core the clients use).
func TestQuickHeadReusesItsBuffer(t *testing.T) {
	tg, err := target.Parse("http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb")
	if err != nil {
		t.Fatal(err)
	}
	d := store.DigestOf([]byte("hello"))
	b := quickHead(nil, tg, d, 53080)
	if want := `Etag: "sha256-` + d.String() + `"`; !strings.Contains(string(b), want+"\r\n") {
		t.Fatalf("head %q lacks %q", b, want)
	}
	if got := etag(d); got != `"sha256-`+d.String()+`"` {
		t.Fatalf("etag = %s", got)
	}
	if n := testing.AllocsPerRun(100, func() { b = quickHead(b[:0], tg, d, 53080) }); n != 0 {
		t.Errorf("quickHead into a grown buffer: %.0f allocations per hit, want 0", n)
	}
}

// The lane parses a URI once: asked again, it hands out the string and the
// target it kept, without allocating; the memo is bounded.
func TestQuickTargetIsParsedOnce(t *testing.T) {
	s := &Server{}
	req := []byte("http://deb.example.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb")
	u1, t1, ok := s.quickTarget(req)
	want, err := target.Parse(string(req))
	if !ok || err != nil || t1 != want || u1 != string(req) {
		t.Fatalf("quickTarget = %q %+v %v; want %+v", u1, t1, ok, want)
	}
	if n := testing.AllocsPerRun(100, func() { s.quickTarget(req) }); n != 0 {
		t.Errorf("quickTarget of a URI seen before: %.0f allocations, want 0", n)
	}
	if _, _, ok := s.quickTarget([]byte("http://h/x.deb?q=1")); ok {
		t.Error("quickTarget took a URI target.Parse refuses")
	}
	for i := range 3 * maxMemoTargets {
		if _, _, ok := s.quickTarget([]byte("http://deb.example.org/pool/" + strconv.Itoa(i) + ".deb")); !ok {
			t.Fatal("quickTarget refused a URI that parses")
		}
	}
	if n := len(s.targets.m); n > maxMemoTargets {
		t.Errorf("memo holds %d targets, want at most %d", n, maxMemoTargets)
	}
	// A long URI is parsed (and answered) but not kept.
	long := []byte("http://deb.example.org/pool/" + strings.Repeat("a", maxMemoURI) + ".deb")
	if _, _, ok := s.quickTarget(long); !ok {
		t.Fatal("quickTarget refused a long URI that parses")
	}
	if _, kept := s.targets.m[string(long)]; kept {
		t.Errorf("memo kept a URI of %d bytes (at most %d are kept)", len(long), maxMemoURI)
	}
}
