package testrepo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// originDir is a directory with a 1 MiB file, a small file and a subdir.
func originDir(t *testing.T) (dir string, big []byte) {
	t.Helper()
	dir = t.TempDir()
	big = testrepo.Package{Size: 1 << 20, Seed: 42}.Payload()
	if err := os.MkdirAll(filepath.Join(dir, "pool", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pool", "big.deb"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "small.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, big
}

// client never reuses connections, so Stop/Start tests see fresh dials.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

func TestOriginServes(t *testing.T) {
	t.Parallel()
	dir, big := originDir(t)
	o := testrepo.Serve(t, dir)
	if !strings.HasPrefix(o.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %s is not on 127.0.0.1", o.URL)
	}
	resp, _ := get(t, o.URL+"/pool/big.deb")
	lastMod, etag := resp.Header.Get("Last-Modified"), resp.Header.Get("ETag")
	if lastMod == "" || etag == "" {
		t.Fatalf("no Last-Modified (%q) or ETag (%q)", lastMod, etag)
	}
	for _, tc := range []struct {
		name       string
		path       string
		hdr        []string
		wantStatus int
		wantBody   []byte
	}{
		{"whole file", "/pool/big.deb", nil, 200, big},
		{"range", "/pool/big.deb", []string{"Range", "bytes=1000-1999"}, 206, big[1000:2000]},
		{"open range", "/pool/big.deb", []string{"Range", "bytes=1048000-"}, 206, big[1048000:]},
		{"suffix range", "/pool/big.deb", []string{"Range", "bytes=-10"}, 206, big[len(big)-10:]},
		{"range past end", "/pool/big.deb", []string{"Range", "bytes=2000000-"}, 416, nil},
		{"if-modified-since", "/pool/big.deb", []string{"If-Modified-Since", lastMod}, 304, nil},
		{"if-none-match", "/pool/big.deb", []string{"If-None-Match", etag}, 304, nil},
		{"if-none-match other", "/pool/big.deb", []string{"If-None-Match", `"nope"`}, 200, big},
		{"missing", "/pool/nothing.deb", nil, 404, nil},
		{"directory", "/pool/sub", nil, 404, nil},
		{"root", "/", nil, 404, nil},
		{"traversal", "/../../../../etc/passwd", nil, 404, nil},
		{"small", "/small.txt", nil, 200, []byte("hello\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, o.URL+tc.path, tc.hdr...)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantBody != nil && !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body: %d bytes, want %d bytes (equal prefix %v)", len(body), len(tc.wantBody),
					bytes.HasPrefix(tc.wantBody, body[:min(len(body), 16)]))
			}
		})
	}
	if n := o.Requests(".deb"); n != 10 {
		t.Errorf("Requests(.deb) = %d, want 10", n)
	}
	var ranged int
	for _, r := range o.Log() {
		if r.Range != "" {
			ranged++
			if r.Status != 206 && r.Status != 416 {
				t.Errorf("range request %s logged status %d", r.Range, r.Status)
			}
		}
	}
	if ranged != 4 {
		t.Errorf("log shows %d range requests, want 4", ranged)
	}
	o.ResetLog()
	if len(o.Log()) != 0 || o.Requests("") != 0 {
		t.Error("ResetLog left entries")
	}
}

func TestOriginStopStart(t *testing.T) {
	t.Parallel()
	dir, _ := originDir(t)
	o := testrepo.Serve(t, dir)
	url := o.URL
	if resp, _ := get(t, url+"/small.txt"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	o.Stop()
	if o.Running() {
		t.Error("Running after Stop")
	}
	// Normally "connection refused"; on a busy machine another process may
	// briefly take the freed port, so any failure will do, as long as this
	// origin saw nothing.
	if _, err := client.Get(url + "/small.txt"); err == nil {
		t.Error("GET while stopped succeeded")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("GET while stopped: %v (expected connection refused)", err)
	}
	if n := o.Requests("small.txt"); n != 1 {
		t.Errorf("origin logged %d GETs, want 1 (none while stopped)", n)
	}
	o.Stop() // twice is harmless
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	if o.URL != url {
		t.Errorf("URL changed from %s to %s", url, o.URL)
	}
	if resp, body := get(t, url+"/small.txt"); resp.StatusCode != 200 || string(body) != "hello\n" {
		t.Errorf("after Start: %d %q", resp.StatusCode, body)
	}
	if err := o.Start(); err != nil {
		t.Errorf("Start while running: %v", err)
	}
}

// TestOriginStopBreaksTransfer: Stop in the middle of a (throttled) body
// cuts it, the client sees an error, and the log marks it aborted.
func TestOriginStopBreaksTransfer(t *testing.T) {
	t.Parallel()
	dir, big := originDir(t)
	o := testrepo.Serve(t, dir)
	o.Throttle(".deb", 64<<10) // 1 MiB takes ~16 s: far longer than this test
	resp, err := client.Get(o.URL + "/pool/big.deb")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, big[:1000]) {
		t.Error("throttled bytes differ from the file")
	}
	if l := o.Log(); len(l) != 1 || l[0].Status != 200 || l[0].Bytes >= int64(len(big)) || l[0].Aborted {
		t.Errorf("mid-transfer log entry: %+v", l)
	}
	o.Stop()
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("body ended cleanly after Stop (%d more bytes)", len(rest))
	}
	if l := o.Log(); !l[0].Aborted {
		t.Errorf("log entry not marked aborted: %+v", l[0])
	}
}

func TestOriginFaults(t *testing.T) {
	t.Parallel()
	dir, big := originDir(t)
	o := testrepo.Serve(t, dir)
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		c[0] ^= 0xff
		return c
	}

	t.Run("tamper", func(t *testing.T) {
		o.Tamper("/pool/big.deb", flip)
		_, body := get(t, o.URL+"/pool/big.deb")
		if bytes.Equal(body, big) || !bytes.Equal(body[1:], big[1:]) {
			t.Error("tampered body is not the file with its first byte flipped")
		}
		if disk, _ := os.ReadFile(filepath.Join(dir, "pool/big.deb")); !bytes.Equal(disk, big) {
			t.Error("Tamper changed the file on disk")
		}
		// Ranges apply to the tampered bytes.
		_, part := get(t, o.URL+"/pool/big.deb", "Range", "bytes=0-1")
		if !bytes.Equal(part, body[:2]) {
			t.Errorf("range of tampered file = %x, want %x", part, body[:2])
		}
		// A revalidation with the file's Last-Modified still gets the
		// tampered bytes, not a 304.
		resp, reval := get(t, o.URL+"/pool/big.deb", "If-Modified-Since", lastModOf(t, o.URL+"/small.txt"))
		if resp.StatusCode != 200 || !bytes.Equal(reval, body) || resp.Header.Get("Last-Modified") != "" {
			t.Errorf("tampered revalidation: status %d, %d bytes, Last-Modified %q", resp.StatusCode, len(reval), resp.Header.Get("Last-Modified"))
		}
		o.Untamper("/pool/big.deb")
		if _, body := get(t, o.URL+"/pool/big.deb"); !bytes.Equal(body, big) {
			t.Error("Untamper did not restore the file")
		}
	})

	t.Run("fail with status", func(t *testing.T) {
		o.FailWith(".deb", http.StatusServiceUnavailable)
		resp, body := get(t, o.URL+"/pool/big.deb")
		if resp.StatusCode != 503 || !strings.Contains(string(body), "injected") {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
		if resp, _ := get(t, o.URL+"/small.txt"); resp.StatusCode != 200 {
			t.Errorf("fault leaked to another path: %d", resp.StatusCode)
		}
		o.FailWith(".deb", 0)
		if resp, _ := get(t, o.URL+"/pool/big.deb"); resp.StatusCode != 200 {
			t.Errorf("after clearing: %d", resp.StatusCode)
		}
	})

	t.Run("cut after", func(t *testing.T) {
		o.ResetLog()
		o.CutAfter("big.deb", 5000)
		resp, err := client.Get(o.URL + "/pool/big.deb")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want unexpected EOF", err)
		}
		if len(body) != 5000 || !bytes.Equal(body, big[:5000]) {
			t.Errorf("got %d bytes before the cut, want the file's first 5000", len(body))
		}
		if l := o.Log(); len(l) != 1 || !l[0].Aborted || l[0].Bytes != 5000 {
			t.Errorf("log: %+v", l)
		}
		o.CutAfter("big.deb", 0)
	})

	t.Run("merge by longest suffix", func(t *testing.T) {
		o.SetFault("", testrepo.Fault{Status: 500})
		o.SetFault("small.txt", testrepo.Fault{Tamper: func([]byte) []byte { return []byte("x") }})
		// Status comes from "" (the only one that sets it).
		if resp, _ := get(t, o.URL+"/small.txt"); resp.StatusCode != 500 {
			t.Errorf("status %d, want 500", resp.StatusCode)
		}
		o.ClearFault("")
		if _, body := get(t, o.URL+"/small.txt"); string(body) != "x" {
			t.Errorf("body %q, want tampered x", body)
		}
		o.ClearFaults()
		if _, body := get(t, o.URL+"/small.txt"); string(body) != "hello\n" {
			t.Errorf("body %q after ClearFaults", body)
		}
	})

	t.Run("delay until client leaves", func(t *testing.T) {
		o.ResetLog()
		o.SetDelay("small.txt", time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+"/small.txt", nil)
		errc := make(chan error, 1)
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		// Wait until the origin holds the request, then give up on it.
		for o.Requests("small.txt") == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("delayed GET ended with %v, want canceled", err)
		}
		o.SetDelay("small.txt", 0)
		if resp, _ := get(t, o.URL+"/small.txt"); resp.StatusCode != 200 {
			t.Errorf("after clearing delay: %d", resp.StatusCode)
		}
	})

	t.Run("throttle delivers whole body", func(t *testing.T) {
		o.Throttle("big.deb", 8<<20)
		if _, body := get(t, o.URL+"/pool/big.deb"); !bytes.Equal(body, big) {
			t.Errorf("throttled body differs: %d bytes", len(body))
		}
		o.Throttle("big.deb", 0)
	})

	t.Run("methods", func(t *testing.T) {
		resp, err := client.Head(o.URL + "/pool/big.deb")
		if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
			t.Errorf("HEAD: %v %+v", err, resp)
		}
		resp, err = client.Post(o.URL+"/pool/big.deb", "text/plain", strings.NewReader("x"))
		if err != nil || resp.StatusCode != 405 {
			t.Errorf("POST: %v %+v", err, resp)
		}
	})
}

// TestOriginOnlyLoopback: nothing but 127.0.0.1 is listened on.
func TestOriginOnlyLoopback(t *testing.T) {
	dir, _ := originDir(t)
	o := testrepo.Serve(t, dir)
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Addr %s (%v)", o.Addr, err)
	}
}

func TestOriginTLS(t *testing.T) {
	t.Parallel()
	dir, big := originDir(t)
	o := testrepo.ServeTLS(t, dir)
	if !strings.HasPrefix(o.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", o.URL)
	}
	if o.CertFile() == "" || o.CertPool() == nil {
		t.Fatal("no certificate exposed")
	}
	c := o.Client()
	check := func() {
		t.Helper()
		resp, err := c.Get(o.URL + "/pool/big.deb")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, big) {
			t.Fatalf("body: %d bytes, %v", len(body), err)
		}
	}
	check()
	// A client that does not trust the certificate is refused.
	if _, err := client.Get(o.URL + "/small.txt"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusting client: %v, want a certificate error", err)
	}
	// Still TLS, same URL, after a restart.
	o.Stop()
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	check()
	if n := o.Requests("big.deb"); n != 2 {
		t.Errorf("Requests = %d, want 2", n)
	}
	if plain := testrepo.Serve(t, dir); plain.CertFile() != "" || plain.CertPool() != nil {
		t.Error("plain origin exposes a certificate")
	}
}

// lastModOf returns a Last-Modified far in the future relative to url's
// file, so any If-Modified-Since check against the real file would pass.
func lastModOf(t *testing.T, url string) string {
	resp, _ := get(t, url)
	lm, err := http.ParseTime(resp.Header.Get("Last-Modified"))
	if err != nil {
		t.Fatalf("Last-Modified of %s: %v", url, err)
	}
	return lm.Add(24 * time.Hour).UTC().Format(http.TimeFormat)
}
