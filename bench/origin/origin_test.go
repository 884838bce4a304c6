package origin

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOrigin(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pool", "a.deb"), []byte("real bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Port < 20000 || s.Port > 32767 {
		t.Fatalf("port %d outside 20000-32767", s.Port)
	}
	tests := []struct {
		name, path string
		setup      func()
		status     int
		body       string
	}{
		{"file", "/pool/a.deb", nil, 200, "real bytes"},
		{"missing", "/pool/b.deb", nil, 404, ""},
		{"directory", "/pool", nil, 404, ""},
		{"escape is cleaned", "/../pool/a.deb", nil, 200, "real bytes"},
		{"tampered", "/pool/a.deb", func() {
			s.Tamper("/pool/a.deb", func(b []byte) []byte { return append([]byte("fake"), b[4:]...) })
		}, 200, "fake bytes"},
		{"untampered", "/pool/a.deb", func() { s.Untamper("/pool/a.deb") }, 200, "real bytes"},
		{"throttled", "/pool/a.deb", func() { s.Throttle("", 1e6) }, 200, "real bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			st, body := get(t, s.URL+tc.path)
			if st != tc.status || (tc.body != "" && body != tc.body) {
				t.Fatalf("GET %s = %d %q, want %d %q", tc.path, st, body, tc.status, tc.body)
			}
		})
	}
	// Five whole files and one 404 with its one-line body.
	want := int64(5*len("real bytes") + len("origin: not found: /pool/b.deb\n"))
	if n, b := s.Count(".deb"); n != 6 || b != want {
		t.Fatalf("Count(.deb) = %d requests, %d bytes; want 6 and %d", n, b, want)
	}
	s.ResetLog()
	if n, _ := s.Count(""); n != 0 {
		t.Fatalf("after ResetLog: %d requests", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL + "/pool/a.deb"); err == nil {
		t.Fatal("a closed origin answered")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if st, body := get(t, s.URL+"/pool/a.deb"); st != 200 || body != "real bytes" {
		t.Fatalf("after Restart: %d %q", st, body)
	}
}

func TestStartNeedsDirectory(t *testing.T) {
	if _, err := Start(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Start on a missing directory: no error")
	}
}
