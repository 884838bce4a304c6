package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// quickRig is a node whose index of defaultPackages a client has fetched,
// with alpha (20 KiB) and delta (1 KiB) cached: hits the quick lane can
// answer. bravo (100 KiB) is cached too, but too large for memory.
func quickRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	r := newRig(t, o)
	if out, err := r.client(false).Update(context.Background()); err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	for _, name := range []string{"alpha", "delta", "bravo"} {
		resp, _, err := r.Get(r.url(name), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("fetching %s: %v", name, err)
		}
		// A download answers its client before its commit ends; the
		// package is held (a hit) once the store has it.
		d, err := store.ParseDigest(r.repo.Debs[name].SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !noderig.Eventually(func() bool { return r.Store.HasBlob(d) }) {
			t.Fatalf("%s was not committed to the store", name)
		}
	}
	return r
}

// deb returns the bytes of the package name.
func (r *rig) deb(name string) []byte {
	r.t.Helper()
	b, err := os.ReadFile(r.repo.Path(r.repo.Debs[name].Path))
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

func (r *rig) url(name string) string { return r.origin.URL + "/" + r.repo.Debs[name].Path }

// raw sends the heads on a new connection to the node, in one write, and
// reads one answer per head.
func (r *rig) raw(heads ...string) []*http.Response {
	r.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, strings.Join(heads, "")); err != nil {
		r.t.Fatal(err)
	}
	return answers(r.t, c, len(heads))
}

// answers reads n answers from c, in order, each with its body read (so
// that the next can be read).
func answers(t *testing.T, c net.Conn, n int) []*http.Response {
	t.Helper()
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d of %d: body: %v", i+1, n, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
	return out
}

func (r *rig) get(name string, extra ...string) string {
	host := strings.TrimPrefix(r.origin.URL, "http://")
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Debian APT-HTTP/1.3 (2.6.1)\r\n%s\r\n", r.url(name), host, strings.Join(extra, ""))
}

func body(resp *http.Response) []byte {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// Issue 13: a hit the quick lane answers is the answer net/http gives,
// header for header (Date aside) and byte for byte, and is counted and
// logged as a hit.
func TestQuickLaneAnswersAsNetHTTP(t *testing.T) {
	r := quickRig(t, rigOptions{})
	before := r.State()
	quick := r.raw(r.get("alpha"), r.get("delta"))
	if !strings.Contains(r.Logs.String(), `source="cache; quick"`) {
		t.Fatal("no request was answered by the quick lane (no debug line says so)")
	}
	after := r.State()
	if got := after.Requests["hit"] - before.Requests["hit"]; got != 2 {
		t.Errorf("hits counted: %d, want 2", got)
	}
	want := r.repo.Debs["alpha"].Size + r.repo.Debs["delta"].Size
	if got := after.Served["cache"] - before.Served["cache"]; got != want {
		t.Errorf("bytes served from the cache: %d, want %d", got, want)
	}

	proxy.SetQuickLane(r.Proxy, false)
	lines := strings.Count(r.Logs.String(), "cache; quick")
	slow := r.raw(r.get("alpha"), r.get("delta"))
	if strings.Count(r.Logs.String(), "cache; quick") != lines {
		t.Fatal("the quick lane answered while turned off")
	}
	for i, name := range []string{"alpha", "delta"} {
		q, s := quick[i], slow[i]
		if q.StatusCode != 200 || s.StatusCode != 200 {
			t.Fatalf("%s: status %d (quick) and %d (net/http)", name, q.StatusCode, s.StatusCode)
		}
		if !bytes.Equal(body(q), r.deb(name)) || !bytes.Equal(body(s), body(q)) {
			t.Errorf("%s: the bodies differ from the package", name)
		}
		q.Header.Del("Date")
		s.Header.Del("Date")
		if fmt.Sprint(q.Header) != fmt.Sprint(s.Header) || q.ContentLength != s.ContentLength {
			t.Errorf("%s: quick lane's header\n%v\nnet/http's\n%v", name, q.Header, s.Header)
		}
	}
}

// Issue 13: a pipeline mixing hits the lane takes with requests it leaves
// to net/http (a range, a conditional, a file too large for memory, a miss
// from the origin) is answered in order, each request as asked.
func TestQuickLaneInAPipeline(t *testing.T) {
	r := quickRig(t, rigOptions{})
	alpha := r.deb("alpha")
	resps := r.raw(
		r.get("alpha"),
		r.get("alpha", "Range: bytes=10-19\r\n"),
		r.get("delta"),
		r.get("alpha", `If-None-Match: "sha256-`+r.repo.Debs["alpha"].SHA256+"\"\r\n"),
		r.get("bravo"),
		r.get("charlie"), // a miss: from the origin
		r.get("alpha"),
		r.get("delta", "Connection: close\r\n"),
	)
	type want struct {
		status int
		body   []byte
	}
	for i, w := range []want{
		{200, alpha},
		{206, alpha[10:20]},
		{200, r.deb("delta")},
		{304, nil},
		{200, r.deb("bravo")},
		{200, r.deb("charlie")},
		{200, alpha},
		{200, r.deb("delta")},
	} {
		if resps[i].StatusCode != w.status || !bytes.Equal(body(resps[i]), w.body) {
			t.Errorf("answer %d: status %d, %d bytes; want %d, %d bytes", i+1, resps[i].StatusCode, len(body(resps[i])), w.status, len(w.body))
		}
	}
	if n := strings.Count(r.Logs.String(), "cache; quick"); n < 2 {
		t.Errorf("the quick lane answered %d of the pipeline's requests, want at least the first two plain hits", n)
	}
}

// A hostile client's tunnel: bytes sent through a CONNECT tunnel are the
// tunnel's, even when they read as a hit the quick lane could answer. They
// must reach the target, and no answer of pkgswarm's may appear in it.
func TestQuickLaneNeverAnswersIntoATunnel(t *testing.T) {
	target := echoServer(t)
	r := quickRig(t, rigOptions{cfg: func(c *node.Config) { c.ConnectAllow = []string{target} }})
	c, err := net.Dial("tcp", strings.TrimPrefix(r.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	inner := r.get("alpha")
	// The CONNECT and the tunnel's first bytes in one write, as a client
	// that does not wait for the 200 sends them.
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n%s", target, target, inner)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	got := make([]byte, len(inner))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("reading the tunnel's echo: %v (got %q)", err, got)
	}
	if string(got) != inner {
		t.Fatalf("the tunnel carried %q, want the echo of %q", got, inner)
	}
}
