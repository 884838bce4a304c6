package store

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"
)

// openTest opens a store in a fresh temporary directory (or dir if given) and
// closes it when the test ends.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// putBlob writes and commits b, returning its digest.
func putBlob(t testing.TB, s *Store, b []byte) Digest {
	t.Helper()
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort(nil)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	d := DigestOf(b)
	if err := w.Commit(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// readBlob returns the bytes of blob d.
func readBlob(t testing.TB, s *Store, d Digest) []byte {
	t.Helper()
	f, size, err := s.OpenBlob(d)
	if err != nil {
		t.Fatalf("OpenBlob(%s): %v", d, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("OpenBlob(%s) size %d, read %d bytes", d, size, len(b))
	}
	return b
}

// waitUntil polls cond until it holds. No deadline: the test binary's timeout
// reports a hang.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i%10000 == 9999 {
			t.Logf("still waiting until %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func assertBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes (digest %s), want %d bytes (digest %s)", what, len(got), DigestOf(got), len(want), DigestOf(want))
	}
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

type fileID struct {
	ino   uint64
	mode  os.FileMode
	size  int64
	mtime time.Time
}

func statBlob(t testing.TB, s *Store, d Digest) fileID {
	t.Helper()
	fi, err := os.Stat(s.BlobPath(d))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{ino: st.Ino, mode: fi.Mode().Perm(), size: fi.Size(), mtime: fi.ModTime()}
}
