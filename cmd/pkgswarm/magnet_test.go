package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMagnetArgumentIsARegularFile: a FILE argument that is not a regular
// file (a device that never ends, a FIFO nobody writes) is refused with a
// clear error at once instead of being hashed forever.
func TestMagnetArgumentIsARegularFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "x.deb")
	if err := os.WriteFile(good, []byte("package"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("package"))
	if d, err := resolveDigest("http://127.0.0.1:1", good); err != nil || d != hex.EncodeToString(sum[:]) {
		t.Fatalf("regular file: got %q, %v", d, err)
	}
	for _, arg := range []string{"/dev/zero", dir} {
		done := make(chan error, 1)
		go func() {
			_, err := resolveDigest("http://127.0.0.1:1", arg)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: got error %v, want one saying it is not a regular file", arg, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still hashing after 10 s", arg)
		}
	}
}

// FuzzResolveDigest: whatever the argument and whatever ETag the node
// answers with, the result is an error or 64 lower-case hex digits, a
// digest argument resolves to itself, and a URL resolves only to the
// digest its ETag names.
func FuzzResolveDigest(f *testing.F) {
	d := strings.Repeat("ab", 32)
	f.Add(d, `"sha256-`+d+`"`)
	f.Add(strings.ToUpper(d), "")
	f.Add("http://deb.example/pool/x.deb", `"sha256-`+d+`"`)
	f.Add("https://deb.example/x", `W/"sha256-`+d+`"`)
	f.Add("http://deb.example/x", `"sha256-`+d[:63]+`"`)
	f.Add("not/a/file", "")
	etag := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case e := <-etag:
			w.Header().Set("ETag", e)
		default:
		}
	}))
	f.Cleanup(srv.Close)
	f.Fuzz(func(t *testing.T, arg, tag string) {
		if !strings.HasPrefix(arg, "http://") && !strings.HasPrefix(arg, "https://") && !hexDigest.MatchString(strings.ToLower(arg)) {
			// Local paths: only ones inside a temp dir, never the machine's files.
			arg = filepath.Join(t.TempDir(), filepath.Base(arg))
		}
		select {
		case <-etag:
		default:
		}
		etag <- tag
		got, err := resolveDigest(srv.URL, arg)
		if err != nil {
			return
		}
		if !hexDigest.MatchString(got) {
			t.Fatalf("resolveDigest(%q) = %q, not a digest", arg, got)
		}
		if a := strings.ToLower(arg); hexDigest.MatchString(a) && got != a {
			t.Fatalf("resolveDigest(%q) = %q, want the argument", arg, got)
		}
		if strings.HasPrefix(arg, "http") && !strings.Contains(tag, got) {
			t.Fatalf("resolveDigest(%q) with ETag %q = %q, not the ETag's digest", arg, tag, got)
		}
	})
}
