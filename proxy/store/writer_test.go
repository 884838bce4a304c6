package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

func TestCommit(t *testing.T) {
	t.Parallel()
	content := []byte("Package: hello\nVersion: 2.10-3\n")
	tests := []struct {
		name    string
		write   [][]byte
		want    Digest
		wantErr error
	}{
		{name: "good", write: [][]byte{content[:5], content[5:]}, want: DigestOf(content)},
		{name: "empty", write: nil, want: DigestOf(nil)},
		{name: "mismatch", write: [][]byte{content}, want: DigestOf([]byte("other")), wantErr: ErrDigestMismatch},
		{name: "truncated", write: [][]byte{content[:10]}, want: DigestOf(content), wantErr: ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Options{InMemoryIndex: true})
			w, err := s.NewWriter()
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			for _, p := range tc.write {
				if _, err := w.Write(p); err != nil {
					t.Fatal(err)
				}
				all = append(all, p...)
			}
			if w.Size() != int64(len(all)) || w.Sum() != DigestOf(all) {
				t.Fatalf("Size/Sum = %d/%s, want %d/%s", w.Size(), w.Sum(), len(all), DigestOf(all))
			}
			err = w.Commit(tc.want)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Commit: %v, want %v", err, tc.wantErr)
			}
			if tmp := listDir(t, s.tmpDir); len(tmp) != 0 {
				t.Fatalf("temporary files left after Commit: %v", tmp)
			}
			if tc.wantErr != nil {
				if s.HasBlob(tc.want) {
					t.Fatalf("blob %s stored after a failed commit", tc.want)
				}
				if _, _, err := s.OpenBlob(tc.want); !IsNotFound(err) {
					t.Fatalf("OpenBlob after failed commit: %v, want ErrNotFound", err)
				}
				return
			}
			assertBytes(t, "committed blob", readBlob(t, s, tc.want), all)
			if n, b := s.Usage(); n != 1 || b != int64(len(all)) {
				t.Fatalf("Usage = %d, %d; want 1, %d", n, b, len(all))
			}
			// The writer is finished.
			if _, err := w.Write([]byte("x")); err == nil {
				t.Fatal("Write after Commit succeeded")
			}
			if err := w.Commit(tc.want); err == nil {
				t.Fatal("second Commit succeeded")
			}
			w.Abort(errors.New("late abort")) // no-op
			if !s.HasBlob(tc.want) {
				t.Fatal("Abort after Commit removed the blob")
			}
		})
	}
}

func TestAbortRemovesTemp(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	if got := listDir(t, s.tmpDir); len(got) != 1 {
		t.Fatalf("tmp holds %v, want one file", got)
	}
	w.Abort(nil)
	if got := listDir(t, s.tmpDir); len(got) != 0 {
		t.Fatalf("tmp holds %v after Abort", got)
	}
	if err := w.Commit(DigestOf([]byte("partial"))); !errors.Is(err, ErrAborted) {
		t.Fatalf("Commit after Abort: %v, want ErrAborted", err)
	}
}

func TestCommitDuplicateKeepsFile(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	b := []byte("same bytes twice")
	d := putBlob(t, s, b)
	before := statBlob(t, s, d)
	if before.mode != 0o444 {
		t.Fatalf("blob mode %o, want 0444", before.mode)
	}
	putBlob(t, s, b)
	after := statBlob(t, s, d)
	if after != before {
		t.Fatalf("blob file changed by a duplicate commit: %+v -> %+v", before, after)
	}
	if n, _ := s.Usage(); n != 1 {
		t.Fatalf("Usage counts %d blobs, want 1", n)
	}
	if got := listDir(t, s.tmpDir); len(got) != 0 {
		t.Fatalf("tmp holds %v", got)
	}
}

// followAll reads f to the end and returns what it read and the final error.
func followAll(f *Follower, chunk int) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

type followResult struct {
	b   []byte
	err error
}

func startFollowers(w *Writer, n int) []chan followResult {
	var out []chan followResult
	for i := 0; i < n; i++ {
		ch := make(chan followResult, 1)
		f := w.NewFollower(context.Background())
		go func(chunk int) {
			defer f.Close()
			b, err := followAll(f, chunk)
			ch <- followResult{b, err}
		}(512 + i*977)
		out = append(out, ch)
	}
	return out
}

func TestFollowersStream(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	r := rand.New(rand.NewPCG(1, 2))
	content := randBytes(r, 3<<20+17)
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	results := startFollowers(w, 8)
	for off := 0; off < len(content); {
		n := min(1+r.IntN(64<<10), len(content)-off)
		if _, err := w.Write(content[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
		if off == len(content)/2 {
			results = append(results, startFollowers(w, 2)...) // late joiners
		}
	}
	late := startFollowers(w, 1)
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	afterCommit := startFollowers(w, 1)
	for i, ch := range append(append(results, late...), afterCommit...) {
		res := <-ch
		if res.err != nil {
			t.Fatalf("follower %d: %v", i, res.err)
		}
		assertBytes(t, "follower", res.b, content)
	}
}

func TestFollowersFail(t *testing.T) {
	t.Parallel()
	boom := errors.New("origin closed the connection")
	tests := []struct {
		name    string
		finish  func(w *Writer)
		wantErr error
	}{
		{name: "abort", finish: func(w *Writer) { w.Abort(boom) }, wantErr: boom},
		{name: "abort nil", finish: func(w *Writer) { w.Abort(nil) }, wantErr: ErrAborted},
		{name: "mismatch", finish: func(w *Writer) { w.Commit(DigestOf([]byte("something else"))) }, wantErr: ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Options{InMemoryIndex: true})
			w, err := s.NewWriter()
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte("first bytes"))
			results := startFollowers(w, 4)
			waitUntil(t, "4 followers wait", func() bool { return w.Waiting() == 4 })
			tc.finish(w)
			for i, ch := range results {
				res := <-ch
				if !errors.Is(res.err, tc.wantErr) {
					t.Fatalf("follower %d: %v, want %v", i, res.err, tc.wantErr)
				}
				// The last byte is held back until the digest matches.
				if string(res.b) != "first byte" {
					t.Fatalf("follower %d read %q before the failure", i, res.b)
				}
			}
			// A follower created afterwards fails at once.
			if _, err := w.NewFollower(nil).Read(make([]byte, 1)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("late follower: %v, want %v", err, tc.wantErr)
			}
			if got := listDir(t, s.tmpDir); len(got) != 0 {
				t.Fatalf("tmp holds %v", got)
			}
		})
	}
}

func TestFollowerReset(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	content := randBytes(r, 200_000)
	other := randBytes(r, 200_000)
	tests := []struct {
		name string
		// after the Reset, the writer writes rewrite then commits its digest
		rewrite []byte
		// want is the error for followers that read bytes before the Reset
		want error
	}{
		{name: "same content", rewrite: content},
		{name: "different content", rewrite: other, want: ErrDigestMismatch},
		{name: "shorter content", rewrite: content[:50_000], want: ErrDigestMismatch},
		{name: "longer content", rewrite: append(content[:150_001:150_001], other...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Options{InMemoryIndex: true})
			w, err := s.NewWriter()
			if err != nil {
				t.Fatal(err)
			}
			// 150,001 bytes written: a follower may read all but the last
			// (held back until the digest matches).
			w.Write(content[:150_001])
			// One follower reads everything it may so far, one reads part, one reads nothing.
			full, part, idle := w.NewFollower(nil), w.NewFollower(nil), w.NewFollower(nil)
			defer full.Close()
			defer part.Close()
			defer idle.Close()
			buf := make([]byte, 150_000)
			if _, err := io.ReadFull(full, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(part, buf[:40_000]); err != nil {
				t.Fatal(err)
			}
			resFull := make(chan followResult, 1)
			go func() { b, err := followAll(full, 4096); resFull <- followResult{b, err} }()
			waitUntil(t, "the full follower waits", func() bool { return w.Waiting() == 1 })

			if err := w.Reset(); err != nil {
				t.Fatal(err)
			}
			if w.Size() != 0 || w.Generation() != 1 {
				t.Fatalf("after Reset: Size %d Generation %d", w.Size(), w.Generation())
			}
			if full.Offset() != 150_000 || part.Offset() != 40_000 {
				t.Fatalf("offsets moved by Reset: %d, %d", full.Offset(), part.Offset())
			}
			resPart := make(chan followResult, 1)
			go func() { b, err := followAll(part, 1000); resPart <- followResult{b, err} }()
			resIdle := make(chan followResult, 1)
			go func() { b, err := followAll(idle, 3000); resIdle <- followResult{b, err} }()
			for off := 0; off < len(tc.rewrite); off += 7000 {
				if _, err := w.Write(tc.rewrite[off:min(off+7000, len(tc.rewrite))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Commit(DigestOf(tc.rewrite)); err != nil {
				t.Fatal(err)
			}
			rf, rp, ri := <-resFull, <-resPart, <-resIdle
			if !errors.Is(ri.err, nil) {
				t.Fatalf("follower that read nothing before the Reset: %v", ri.err)
			}
			assertBytes(t, "idle follower", ri.b, tc.rewrite)
			if tc.want == nil {
				if rf.err != nil || rp.err != nil {
					t.Fatalf("followers failed: %v, %v", rf.err, rp.err)
				}
				assertBytes(t, "full follower", append(content[:150_000:150_000], rf.b...), tc.rewrite)
				assertBytes(t, "partial follower", append(content[:40_000:40_000], rp.b...), tc.rewrite)
				return
			}
			if !errors.Is(rf.err, tc.want) || !errors.Is(rp.err, tc.want) {
				t.Fatalf("followers that read before the Reset: %v, %v; want %v", rf.err, rp.err, tc.want)
			}
		})
	}
}

func TestFollowerResetTwice(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	content := randBytes(rand.New(rand.NewPCG(5, 6)), 100_000)
	w, _ := s.NewWriter()
	defer w.Abort(nil)
	f := w.NewFollower(nil)
	defer f.Close()
	w.Write(content[:60_001]) // the last byte is held back
	buf := make([]byte, 60_000)
	io.ReadFull(f, buf)
	w.Reset()
	w.Write(content[:20_000]) // shorter than before: checkpoint still pending
	w.Reset()
	for off := 0; off < len(content); off += 10_000 {
		w.Write(content[off : off+10_000])
	}
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	rest, err := followAll(f, 5000)
	if err != nil {
		t.Fatalf("follower after two resets with the same content: %v", err)
	}
	assertBytes(t, "follower", append(buf, rest...), content)
}

func TestFollowerContextAndClose(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	w, _ := s.NewWriter()
	defer w.Abort(nil)
	ctx, cancel := context.WithCancel(context.Background())
	fc := w.NewFollower(ctx)
	defer fc.Close()
	fx := w.NewFollower(nil)
	errc := make(chan error, 2)
	go func() { _, err := fc.Read(make([]byte, 10)); errc <- err }()
	go func() { _, err := fx.Read(make([]byte, 10)); errc <- err }()
	waitUntil(t, "two followers wait", func() bool { return w.Waiting() == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel: %v, want context.Canceled", err)
	}
	fx.Close()
	if err := <-errc; !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
	}
}

func TestFollowerSeek(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	w, _ := s.NewWriter()
	defer w.Abort(nil)
	content := []byte("0123456789abcdefghij")
	f := w.NewFollower(nil)
	defer f.Close()
	if _, err := f.Seek(0, io.SeekEnd); err == nil {
		t.Fatal("SeekEnd before commit succeeded")
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek to a negative offset succeeded")
	}
	// Seek beyond what is written: the Read waits for it (a Range request).
	if off, err := f.Seek(15, io.SeekStart); err != nil || off != 15 {
		t.Fatalf("Seek: %d, %v", off, err)
	}
	got := make(chan followResult, 1)
	go func() { b, err := followAll(f, 3); got <- followResult{b, err} }()
	w.Write(content[:10])
	waitUntil(t, "the follower waits", func() bool { return w.Waiting() == 1 })
	w.Write(content[10:])
	if err := w.Commit(DigestOf(content)); err != nil {
		t.Fatal(err)
	}
	res := <-got
	if res.err != nil || string(res.b) != "fghij" {
		t.Fatalf("read after seek: %q, %v", res.b, res.err)
	}
	if off, err := f.Seek(-4, io.SeekEnd); err != nil || off != 16 {
		t.Fatalf("SeekEnd after commit: %d, %v", off, err)
	}
	if b, err := followAll(f, 100); err != nil || string(b) != "ghij" {
		t.Fatalf("read after SeekEnd: %q, %v", b, err)
	}
}

// TestWriterConcurrentUse runs writers, followers, Size/Sum calls and an Abort
// from another goroutine at once, for the race detector.
func TestWriterConcurrentUse(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	r := rand.New(rand.NewPCG(7, 8))
	content := randBytes(r, 500_000)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		w, err := s.NewWriter()
		if err != nil {
			t.Fatal(err)
		}
		results := startFollowers(w, 3)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_ = w.Size()
				_ = w.Sum()
				_ = w.Generation()
			}
		}()
		go func(i int) {
			defer wg.Done()
			for off := 0; off < len(content); off += 25_000 {
				if i%2 == 1 && off == 250_000 {
					w.Reset()
					off = 0
					i = 0
				}
				w.Write(content[off : off+25_000])
			}
			w.Commit(DigestOf(content))
		}(i)
		for _, ch := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := <-ch
				if res.err != nil {
					t.Errorf("follower: %v", res.err)
					return
				}
				if DigestOf(res.b) != DigestOf(content) {
					t.Errorf("follower read %d bytes hashing to %s", len(res.b), DigestOf(res.b))
				}
			}()
		}
	}
	wg.Wait()
}

func TestOpenRead(t *testing.T) {
	t.Parallel()
	s := openTest(t, Options{InMemoryIndex: true})
	w, _ := s.NewWriter()
	defer w.Abort(nil)
	fl := w.NewFollower(nil) // shares a file offset with the writer's descriptor
	defer fl.Close()
	w.Write([]byte("hello "))
	r, err := w.OpenRead()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "hello " {
		t.Fatalf("OpenRead: %q, %v", b, err)
	}
	r.Seek(2, io.SeekStart)
	fl.f.Seek(1, io.SeekStart) // moving the dup'ed offset must not move the writer
	w.Write([]byte("world"))
	if err := w.Commit(DigestOf([]byte("hello world"))); err != nil {
		t.Fatal(err)
	}
	if got, err := followAll(fl, 4); err != nil || string(got) != "hello world" {
		t.Fatalf("follower: %q, %v", got, err)
	}
	if _, err := w.OpenRead(); err == nil {
		t.Fatal("OpenRead after Commit succeeded")
	}
}

// TestFollowerHoldsBackTheLastByte is the store half of the rule that a
// response whose bytes fail verification is never completed: until Commit has
// matched the digest, a follower never returns the download's final byte, so a
// client reading through it cannot receive a whole file that then fails.
func TestFollowerHoldsBackTheLastByte(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		finish func(w *Writer, content []byte) error
		ok     bool
	}{
		{name: "commit", finish: func(w *Writer, c []byte) error { return w.Commit(DigestOf(c)) }, ok: true},
		{name: "mismatch", finish: func(w *Writer, c []byte) error { return w.Commit(DigestOf([]byte("other"))) }},
		{name: "abort", finish: func(w *Writer, c []byte) error { w.Abort(errors.New("bad rpm signature")); return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openTest(t, Options{InMemoryIndex: true})
			content := []byte("0123456789")
			w, err := s.NewWriter()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatal(err)
			}
			f := w.NewFollower(nil)
			defer f.Close()
			buf := make([]byte, 64)
			n, err := f.Read(buf)
			if err != nil || n != len(content)-1 {
				t.Fatalf("first read: %d bytes, %v; want the %d bytes before the last", n, err, len(content)-1)
			}
			got := make(chan error, 1)
			go func() {
				m, err := f.Read(buf)
				if m > 0 && err == nil {
					m2, err2 := f.Read(buf[m:])
					m, err = m+m2, err2
				}
				if m > 0 && !tc.ok {
					err = fmt.Errorf("released %d more bytes of a download that failed", m)
				}
				got <- err
			}()
			waitUntil(t, "the follower waits for the verdict", func() bool { return w.Waiting() == 1 })
			tc.finish(w, content)
			err = <-got
			if tc.ok && err != io.EOF {
				t.Fatalf("after commit: %v, want the last byte then io.EOF", err)
			}
			if !tc.ok && (err == nil || err == io.EOF) {
				t.Fatalf("after a failed download: %v, want an error", err)
			}
		})
	}
}
