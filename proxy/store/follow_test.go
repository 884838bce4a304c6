package store

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// fileSink is a destination like a TCP connection: an io.ReaderFrom. It
// records whether each reader it was given is one the kernel can send from
// (a limited *os.File, as net's sendfile takes it) and keeps the bytes.
type fileSink struct {
	mu     sync.Mutex
	b      []byte
	files  int // ReadFrom calls given a file
	others int // ReadFrom calls given anything else
}

func (s *fileSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *fileSink) ReadFrom(r io.Reader) (int64, error) {
	isFile := false
	if lr, ok := r.(*io.LimitedReader); ok {
		_, isFile = lr.R.(*os.File)
	}
	b, err := io.ReadAll(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if isFile {
		s.files++
	} else {
		s.others++
	}
	s.b = append(s.b, b...)
	return int64(len(b)), err
}

// newTestWriter starts a download in a fresh store.
func newTestWriter(t *testing.T) *Writer {
	t.Helper()
	w, err := openTest(t, Options{InMemoryIndex: true}).NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor waits until cond holds, at most 10 s: a follower that sends
// nothing fails the test instead of hanging it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s until %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func (s *fileSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.b)
}

// A follower copied to a connection hands it the file, so that the kernel
// sends the bytes from the page cache, as they arrive and in order.
func TestFollowerGivesAConnectionTheFile(t *testing.T) {
	t.Parallel()
	content := randBytes(rand.New(rand.NewPCG(7, 8)), 300_000)
	w := newTestWriter(t)
	fo := w.NewFollower(nil)
	defer fo.Close()
	sink := &fileSink{}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(sink, fo)
		done <- err
	}()
	for off := 0; off < len(content); off += 10_000 {
		w.Write(content[off : off+10_000])
		waitFor(t, "the follower sends what was written", func() bool { return sink.len() >= off+10_000-1 })
		if sent := sink.len(); sent != off+10_000-1 {
			t.Fatalf("%d bytes sent of %d written, want all but the last", sent, off+10_000)
		}
	}
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertBytes(t, "sent", sink.b, content)
	if sink.others != 0 || sink.files < 30 {
		t.Fatalf("the connection was given %d files and %d other readers; want a file for each write", sink.files, sink.others)
	}
}

// CopyTo keeps Read's promises whether it sends from the file or copies:
// the last byte only after the digest matched, an error for a failed
// download or for bytes that a Reset proved wrong, and at most n bytes.
func TestFollowerCopyTo(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 10))
	content, other := randBytes(r, 100_001), randBytes(r, 100_001)
	for _, mode := range []string{"file", "copy"} {
		for _, tc := range []struct {
			name    string
			n       int64
			finish  func(w *Writer) error
			want    []byte // what the destination ends with
			wantErr error
		}{
			{name: "commit", n: -1, finish: func(w *Writer) error { return w.Commit(DigestOf(content)) }, want: content},
			{name: "mismatch", n: -1, finish: func(w *Writer) error { w.Commit(DigestOf(other)); return nil }, want: content[:100_000], wantErr: ErrDigestMismatch},
			{name: "abort", n: -1, finish: func(w *Writer) error { w.Abort(nil); return nil }, want: content[:100_000], wantErr: ErrAborted},
			{name: "rewritten after a reset", n: -1, finish: func(w *Writer) error {
				if err := w.Reset(); err != nil {
					return err
				}
				w.Write(other)
				return w.Commit(DigestOf(other))
			}, want: content[:100_000], wantErr: ErrDigestMismatch},
			{name: "first n bytes", n: 60_000, want: content[:60_000]},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				w := newTestWriter(t)
				defer w.Abort(nil)
				fo := w.NewFollower(nil)
				defer fo.Close()
				sink := &fileSink{}
				var dst io.Writer = sink
				if mode == "copy" {
					dst = struct{ io.Writer }{sink} // no ReadFrom
				}
				type result struct {
					n   int64
					err error
				}
				done := make(chan result, 1)
				go func() {
					n, err := fo.CopyTo(dst, tc.n)
					done <- result{n, err}
				}()
				w.Write(content)
				if tc.finish != nil {
					waitFor(t, "all but the last byte sent", func() bool { return sink.len() >= len(content)-1 && w.Waiting() == 1 })
					if err := tc.finish(w); err != nil {
						t.Fatal(err)
					}
				}
				res := <-done
				if !errors.Is(res.err, tc.wantErr) || (tc.wantErr == nil) != (res.err == nil) {
					t.Fatalf("CopyTo: %v, want %v", res.err, tc.wantErr)
				}
				if res.n != int64(len(tc.want)) || !bytes.Equal(sink.b, tc.want) {
					t.Fatalf("CopyTo sent %d bytes (reported %d), want %d", len(sink.b), res.n, len(tc.want))
				}
				if mode == "copy" && (sink.files != 0 || sink.others != 0) {
					t.Fatalf("a destination without ReadFrom was given readers")
				}
				if mode == "file" && sink.others != 0 {
					t.Fatalf("the connection was given %d readers that are not files", sink.others)
				}
			})
		}
	}
}

// Without a file offset of its own (no /proc), a follower copies through
// a buffer: a dup'ed descriptor shares its offset with the Writer's.
func TestFollowerWithoutOwnOffsetCopies(t *testing.T) {
	t.Parallel()
	content := []byte("bytes that go through a buffer")
	w := newTestWriter(t)
	fo := w.NewFollower(nil)
	defer fo.Close()
	if !fo.ownOffset {
		t.Fatal("a follower of a download in progress has no file offset of its own")
	}
	fo.f.Close()
	f, err := dupFile(w.f)
	if err != nil {
		t.Fatal(err)
	}
	fo.f = f
	fo.ownOffset = false
	w.Write(content)
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	sink := &fileSink{}
	if _, err := io.Copy(sink, fo); err != nil {
		t.Fatal(err)
	}
	assertBytes(t, "copied", sink.b, content)
	if sink.files != 0 {
		t.Fatalf("a shared descriptor was handed over %d times", sink.files)
	}
}

// recTee records what a Writer's tee sees.
type recTee struct {
	b      []byte
	resets int
}

func (r *recTee) Write(p []byte) (int, error) { r.b = append(r.b, p...); return len(p), nil }
func (r *recTee) Reset()                      { r.b = r.b[:0]; r.resets++ }

// A tee sees every byte the Writer hashes, in order, and starts over with a
// Reset, including the bytes written after one that are checked against the
// bytes before it.
func TestWriterTee(t *testing.T) {
	t.Parallel()
	content := randBytes(rand.New(rand.NewPCG(11, 12)), 90_001)
	w := newTestWriter(t)
	tee := &recTee{}
	w.SetTee(tee)
	fo := w.NewFollower(nil) // a follower that read bytes makes the Reset keep checkpoints
	defer fo.Close()
	w.Write(content[:50_000])
	if _, err := io.ReadFull(fo, make([]byte, 40_000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Reset(); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(content); off += 7_000 {
		w.Write(content[off:min(off+7_000, len(content))])
	}
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	if tee.resets != 1 {
		t.Fatalf("tee reset %d times, want 1", tee.resets)
	}
	assertBytes(t, "tee", tee.b, content)
}

// CopyTo sends from where the follower was seeked to (a peer's range).
func TestFollowerCopyToAfterSeek(t *testing.T) {
	t.Parallel()
	content := randBytes(rand.New(rand.NewPCG(13, 14)), 50_000)
	w := newTestWriter(t)
	fo := w.NewFollower(nil)
	defer fo.Close()
	w.Write(content)
	if _, err := fo.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	sink := &fileSink{}
	if n, err := fo.CopyTo(sink, 500); err != nil || n != 500 {
		t.Fatalf("CopyTo: %d bytes, %v", n, err)
	}
	if n, err := fo.CopyTo(sink, 300); err != nil || n != 300 {
		t.Fatalf("second CopyTo: %d bytes, %v", n, err)
	}
	assertBytes(t, "range", sink.b, content[1000:1800])
}
