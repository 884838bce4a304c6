package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
)

// ErrDigestMismatch is wrapped by every error that means "these bytes are not the
// content that was expected": a Commit whose digest differs from the wanted one,
// and, on Followers, bytes read before a Reset that differ from the bytes written
// after it.
var ErrDigestMismatch = errors.New("store: digest mismatch")

// ErrAborted is what Followers return when the Writer was aborted with a nil error.
var ErrAborted = errors.New("store: download aborted")

type writerState int

const (
	writing writerState = iota
	committed
	failed
)

// Writer is a download in progress: a temporary file being filled and hashed.
// Write, Reset, Commit and Abort are serialised (they may be called from different
// goroutines, e.g. Abort on cancellation). Size, Sum, Generation and NewFollower
// may be called at any time. Every Writer must end with Commit or Abort; calling
// Abort after a successful Commit does nothing, so `defer w.Abort(nil)` is safe.
type Writer struct {
	s    *Store
	path string // the temporary file

	wmu         sync.Mutex // serialises Write/Reset/Commit/Abort/OpenRead; protects hash, checkpoints, tee
	f           *os.File
	hash        hash.Hash
	checkpoints []checkpoint // sorted by off
	tee         Tee

	mu        sync.Mutex // protects the fields below; size is written under wmu and mu
	size      int64
	gen       int
	state     writerState
	err       error // why the writer failed
	digest    Digest
	matched   bool // Commit found the wanted digest: followers may end (io.EOF) at size
	fdOpen    bool // f is open (followers may dup it)
	followers map[*Follower]struct{}
	wake      chan struct{} // closed on every change a waiting follower needs; nil if nobody waits
	waiting   int           // followers blocked in Read (for tests and diagnostics)
}

// checkpoint records the hash state after the first off bytes of an earlier
// generation, so the bytes written after a Reset can be checked against the bytes
// followers may already have read.
type checkpoint struct {
	off   int64
	state []byte
}

// NewWriter starts a download into a new temporary file under DIR/tmp.
func (s *Store) NewWriter() (*Writer, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.tmpDir, "dl-*")
	if err != nil {
		return nil, fmt.Errorf("store: create temporary file in %s: %w (check free space and permissions)", s.tmpDir, err)
	}
	return &Writer{
		s:         s,
		path:      f.Name(),
		f:         f,
		hash:      sha256.New(),
		fdOpen:    true,
		followers: make(map[*Follower]struct{}),
	}, nil
}

func (w *Writer) broadcastLocked() {
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
}

func (w *Writer) stateErrLocked(op string) error {
	switch w.state {
	case committed:
		return fmt.Errorf("store: %s: download %s already committed", op, w.digest)
	case failed:
		return fmt.Errorf("store: %s: download already failed: %w", op, w.err)
	}
	return nil
}

// Write appends p to the temporary file and the running hash; waiting followers
// see the bytes once Write returns.
func (w *Writer) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	err := w.stateErrLocked("write")
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	// pwrite at the writer's own offset: descriptors shared with followers
	// (dup'ed, so with one file offset) cannot move where bytes land.
	n, err := w.f.WriteAt(p, w.size)
	if n > 0 {
		diverged, settled := w.hashLocked(p[:n])
		w.mu.Lock()
		w.size += int64(n)
		if diverged || settled {
			w.resolveTaintLocked(diverged, "bytes written after a reset differ from the bytes before it")
		}
		w.broadcastLocked()
		w.mu.Unlock()
	}
	if err != nil {
		return n, fmt.Errorf("store: write temporary file %s: %w (check free space)", w.path, err)
	}
	return n, nil
}

// Tee sees the bytes a Writer hashes, in order from the first, and starts
// again when the Writer is Reset: a second digest of the same bytes (a
// swarm's piece hashes) computed as they arrive, instead of by reading the
// committed file again. Write must not fail or keep p.
type Tee interface {
	io.Writer
	Reset()
}

// SetTee makes t see every byte written from now on; call it before the
// first Write. What t computed describes the blob only if Commit succeeds.
func (w *Writer) SetTee(t Tee) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.tee = t
}

// hashLocked hashes p (which follows the first w.size bytes), comparing the hash
// state at each pending checkpoint it passes. It reports whether a checkpoint
// differed, and whether the last pending checkpoint was passed. w.wmu is held.
func (w *Writer) hashLocked(p []byte) (diverged, settled bool) {
	if w.tee != nil {
		w.tee.Write(p)
	}
	if len(w.checkpoints) == 0 {
		w.hash.Write(p)
		return false, false
	}
	off := w.size
	for len(w.checkpoints) > 0 && w.checkpoints[0].off <= off+int64(len(p)) {
		cp := w.checkpoints[0]
		k := cp.off - off
		w.hash.Write(p[:k])
		p, off = p[k:], cp.off
		st, err := w.hash.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil || !bytes.Equal(st, cp.state) {
			diverged = true
		}
		w.checkpoints = w.checkpoints[1:]
	}
	w.hash.Write(p)
	if diverged {
		w.checkpoints = nil
	}
	return diverged, len(w.checkpoints) == 0
}

// resolveTaintLocked ends the doubt about followers that read bytes before a
// Reset: if diverged, they fail with ErrDigestMismatch; otherwise their bytes are
// confirmed. w.mu is held.
func (w *Writer) resolveTaintLocked(diverged bool, why string) {
	for f := range w.followers {
		if !f.tainted {
			continue
		}
		f.tainted = false
		if diverged && f.err == nil {
			f.err = fmt.Errorf("store: follow download to offset %d: %s: %w", f.off, why, ErrDigestMismatch)
		}
	}
}

// Reset truncates the temporary file to zero bytes and restarts the hash: a
// source failed and the same content will be written again from the start.
// Followers keep their offsets and wait for the file to grow past them again.
// Followers that already read bytes are checked: once the rewritten file reaches
// the length it had at the Reset, its hash state must equal the earlier one, or
// those followers fail with ErrDigestMismatch.
func (w *Writer) Reset() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	if err := w.stateErrLocked("reset"); err != nil {
		w.mu.Unlock()
		return err
	}
	if w.size > 0 {
		st, err := w.hash.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			w.mu.Unlock()
			return fmt.Errorf("store: reset download: save hash state: %w", err)
		}
		cp := checkpoint{off: w.size, state: st}
		i, _ := slices.BinarySearchFunc(w.checkpoints, cp.off, func(c checkpoint, off int64) int { return int(c.off - off) })
		w.checkpoints = slices.Insert(w.checkpoints, i, cp)
		for f := range w.followers {
			if f.read || f.inflight {
				f.tainted = true
			}
		}
	}
	// Size drops to zero before the truncation, so no follower reads past the
	// end of the shrinking file in a loop.
	w.size = 0
	w.gen++
	w.mu.Unlock()
	w.hash.Reset()
	if w.tee != nil {
		w.tee.Reset()
	}
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("store: reset download: truncate %s: %w", w.path, err)
	}
	return nil
}

// Waiting returns how many followers are blocked in Read waiting for bytes.
func (w *Writer) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

// Size returns the number of bytes written since the start or the last Reset.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Generation returns how many times Reset has been called.
func (w *Writer) Generation() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// Sum returns the SHA-256 of the bytes written so far.
func (w *Writer) Sum() Digest {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return Digest(w.hash.Sum(nil))
}

// Commit checks that the temporary file's digest is want, lets followers read
// to the end and get io.EOF, then moves it into the store as blob want (if the
// store already holds want, the temporary file is dropped); it is made durable
// with the next batch (Options.SyncDelay). On a mismatch the
// temporary file is removed, followers fail, and the error wraps
// ErrDigestMismatch. After Commit returns (either way) the Writer is finished.
func (w *Writer) Commit(want Digest) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	err := w.stateErrLocked("commit")
	w.mu.Unlock()
	if err != nil {
		return err
	}
	size := w.Size()
	got := Digest(w.hash.Sum(nil))
	if got != want {
		err := fmt.Errorf("store: commit: the %d bytes downloaded hash to %s, want %s: %w", size, got, want, ErrDigestMismatch)
		w.failLocked(err)
		return err
	}
	if len(w.checkpoints) > 0 {
		// The file ends before the length it had at a Reset: followers that read
		// bytes before that Reset may hold bytes past the end.
		w.checkpoints = nil
		w.mu.Lock()
		w.resolveTaintLocked(true, "the download ended shorter than before a reset")
		w.mu.Unlock()
	}
	// The bytes are the wanted ones: followers may finish now, while the
	// file is renamed into place (and, with SyncDelay < 0, fsynced: that
	// costs milliseconds a waiting client need not wait for; what it read is
	// verified).
	w.mu.Lock()
	w.matched = true
	w.broadcastLocked()
	w.mu.Unlock()
	if w.s.durable.delay < 0 {
		if err := w.f.Sync(); err != nil {
			err = fmt.Errorf("store: commit %s: fsync %s: %w", want, w.path, err)
			w.failLocked(err)
			return err
		}
	}
	over, err := w.s.commitBlob(w.f, want, size)
	if err != nil {
		w.failLocked(err)
		return err
	}
	w.mu.Lock()
	w.state = committed
	w.digest = want
	w.fdOpen = false
	w.broadcastLocked()
	w.mu.Unlock()
	w.f.Close() // followers hold their own descriptors
	w.s.notify(want, size)
	if over {
		w.s.autoEvict()
	}
	return nil
}

// Abort removes the temporary file; followers return err (ErrAborted if err is
// nil). It does nothing if the Writer already finished.
func (w *Writer) Abort(err error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	done := w.state != writing
	w.mu.Unlock()
	if done {
		return
	}
	if err == nil {
		err = ErrAborted
	}
	w.failLocked(err)
}

// failLocked finishes the Writer with err and removes its temporary file.
// w.wmu is held.
func (w *Writer) failLocked(err error) {
	w.mu.Lock()
	w.state = failed
	w.err = err
	w.fdOpen = false
	w.broadcastLocked()
	w.mu.Unlock()
	w.f.Close()
	os.Remove(w.path)
}

// Follower reads a Writer's bytes as they arrive, except the last byte written,
// which it returns only once Commit has matched the digest: a reader can never
// hold every byte of a download that then fails. Read blocks until more bytes are
// written, the Writer commits or fails, the Follower is closed, or the context
// given to NewFollower ends. A Follower is an io.ReadSeeker, but SeekEnd works only
// after the Writer committed (the final size is unknown before). A Follower is
// meant for one goroutine; Close may be called from another.
type Follower struct {
	w   *Writer
	ctx context.Context
	f   *os.File // own descriptor on the temporary file or the committed blob
	// ownOffset: f has a file offset of its own (not shared with the
	// Writer's descriptor or another follower's), so CopyTo may send from it.
	ownOffset bool

	// Guarded by w.mu.
	off      int64
	inflight bool  // a read is in progress outside the lock
	read     bool  // has returned bytes
	tainted  bool  // returned bytes before a Reset that are not yet confirmed
	err      error // set when this follower's bytes cannot be trusted or its file not opened
	closed   bool
}

// NewFollower returns a reader over the Writer's bytes from offset 0. Read
// honours ctx (nil means context.Background()). A follower created after a failed
// Commit or Abort returns that error; after a successful Commit it reads the blob.
func (w *Writer) NewFollower(ctx context.Context) *Follower {
	if ctx == nil {
		ctx = context.Background()
	}
	fl := &Follower{w: w, ctx: ctx}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch w.state {
	case writing:
		if !w.fdOpen {
			fl.err = fmt.Errorf("store: follow download: temporary file closed")
			break
		}
		if f, err := reopenFile(w.f); err == nil {
			fl.f, fl.ownOffset = f, true
			break
		}
		f, err := dupFile(w.f)
		if err != nil {
			fl.err = fmt.Errorf("store: follow download %s: %w", w.path, err)
			break
		}
		fl.f = f
	case committed:
		f, err := os.Open(w.s.BlobPath(w.digest))
		if err != nil {
			fl.err = fmt.Errorf("store: follow committed blob %s: %w", w.digest, err)
			break
		}
		fl.f, fl.ownOffset = f, true
	case failed:
		fl.err = w.err
	}
	w.followers[fl] = struct{}{}
	return fl
}

// reopenFile opens f's file again, read-only, through /proc/self/fd: a
// descriptor with a file offset of its own, which a sendfile(2) from it
// moves, unlike a dup'ed one. It works after the file was renamed into the
// store or unlinked; without /proc it fails and followers use dupFile.
func reopenFile(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nf *os.File
	var oerr error
	err = sc.Control(func(fd uintptr) {
		nf, oerr = os.Open("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	})
	if err == nil {
		err = oerr
	}
	return nf, err
}

// dupFile returns a second descriptor for f's open file. Followers read with
// pread (ReadAt), so the shared file offset does not matter, and the descriptor
// stays valid after the file is renamed into the store or unlinked.
func dupFile(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd uintptr
	var derr error
	err = sc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		nfd = r
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("duplicate descriptor: %w", err)
	}
	return os.NewFile(nfd, f.Name()), nil
}

// Read reads the next bytes. It returns io.EOF only after the Writer committed
// and every byte was read. It returns the Abort error, or an error wrapping
// ErrDigestMismatch, if the download failed; bytes already returned must then be
// discarded by the caller (e.g. by aborting the client response).
func (f *Follower) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		off, n, err := f.claim(int64(len(p)))
		if err != nil {
			return 0, err
		}
		m, rerr := f.f.ReadAt(p[:n], off)
		counted, closed := f.settle(off, int64(m))
		if counted {
			return m, nil
		}
		if rerr != nil && rerr != io.EOF && !closed {
			return 0, fmt.Errorf("store: read follower at offset %d: %w", off, rerr)
		}
		// Truncated by a concurrent Reset, or seeked meanwhile: look again.
	}
}

// WriteTo writes the follower's bytes to dst as they arrive, to the end of
// the download; see CopyTo.
func (f *Follower) WriteTo(dst io.Writer) (int64, error) { return f.CopyTo(dst, -1) }

// CopyTo writes the follower's next n bytes (every byte to the end of the
// download if n < 0) to dst as they arrive, as Read would return them, and
// returns how many it wrote; at the end of the download it stops early
// without an error. On a failed download it returns Read's error, and the
// bytes already written must be discarded as with Read.
//
// When dst is an io.ReaderFrom (a TCP connection is, and net/http's
// response passes the file on to it) and the follower has its own file
// offset, the bytes go to dst as a file: the kernel sends them from the page
// cache (sendfile(2)) instead of copying them through this process twice.
func (f *Follower) CopyTo(dst io.Writer, n int64) (int64, error) {
	rf, ok := dst.(io.ReaderFrom)
	if !ok || !f.ownOffset {
		src := io.Reader(readerOnly{f})
		if n >= 0 {
			src = io.LimitReader(src, n)
		}
		return io.Copy(writerOnly{dst}, src)
	}
	var total int64
	pos := int64(-1) // f.f's file offset when known: the end of the last send
	for n < 0 || total < n {
		want := int64(math.MaxInt64)
		if n >= 0 {
			want = n - total
		}
		off, k, err := f.claim(want)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		var m int64
		if off != pos {
			_, err = f.f.Seek(off, io.SeekStart)
		}
		if err == nil {
			m, err = rf.ReadFrom(&io.LimitedReader{R: f.f, N: k})
			pos = off + m
		}
		if err != nil {
			pos = -1 // a failed ReadFrom may have read more than it sent
		}
		// The bytes are out whether or not they count: a follower is read
		// by one goroutine, so only a Close can have intervened, and the
		// next claim reports it.
		total += m
		_, closed := f.settle(off, m)
		if err != nil && !closed {
			return total, fmt.Errorf("store: send follower bytes from offset %d: %w", off, err)
		}
	}
	return total, nil
}

// readerOnly and writerOnly hide every method but Read and Write, so that
// io.Copy neither calls CopyTo again nor hands dst a reader it cannot send
// from.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// claim waits until bytes at the follower's offset may be read and returns
// that offset and how many (at most max), with the read marked in flight.
// It returns io.EOF at the end of a download whose digest matched, and the
// follower's or the download's error when either failed.
func (f *Follower) claim(max int64) (off, n int64, err error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		switch {
		case f.closed:
			return 0, 0, fmt.Errorf("store: read follower: %w", os.ErrClosed)
		case f.err != nil:
			return 0, 0, f.err
		case w.state == failed:
			return 0, 0, w.err
		case f.off < w.readableLocked():
			f.inflight = true
			return f.off, min(max, w.readableLocked()-f.off), nil
		case w.state == committed || w.matched && w.state == writing:
			return 0, 0, io.EOF
		}
		if err := f.ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("store: read follower: %w", err)
		}
		if w.wake == nil {
			w.wake = make(chan struct{})
		}
		ch := w.wake
		w.waiting++
		w.mu.Unlock()
		select {
		case <-ch:
		case <-f.ctx.Done():
		}
		w.mu.Lock()
		w.waiting--
	}
}

// settle ends a read claimed at off that moved m bytes. The bytes count,
// and the offset advances past them, unless the follower was closed or
// seeked meanwhile; it also reports whether the follower is closed.
func (f *Follower) settle(off, m int64) (counted, closed bool) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	f.inflight = false
	if m > 0 && f.off == off && !f.closed {
		f.off += m
		f.read = true
		return true, false
	}
	return false, f.closed
}

// holdBack is how many final bytes a follower holds back until the digest
// has matched. One is enough: a client told the Content-Length never sees a
// complete body, and a response cut before its last byte is a failed
// transfer to every HTTP client, whether or not it verifies what it gets
// (DESIGN.md invariant 1).
const holdBack = 1

// readableLocked is how far followers may read: every byte once the digest
// matched, else all but the last holdBack written so far (the download may
// end there and fail verification). w.mu is held.
func (w *Writer) readableLocked() int64 {
	if w.matched || w.state == committed {
		return w.size
	}
	return max(0, w.size-holdBack)
}

// Seek sets the offset of the next Read. SeekEnd is relative to the final size
// and fails until the Writer committed. Seeking beyond the bytes written so far
// is allowed: Read then waits for them.
func (f *Follower) Seek(offset int64, whence int) (int64, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.off
	case io.SeekEnd:
		if w.state != committed {
			return 0, errors.New("store: seek follower from end: the final size is not known until the download commits")
		}
		base = w.size
	default:
		return 0, fmt.Errorf("store: seek follower: bad whence %d", whence)
	}
	if base+offset < 0 {
		return 0, fmt.Errorf("store: seek follower to negative offset %d", base+offset)
	}
	f.off = base + offset
	return f.off, nil
}

// Offset returns the offset of the next Read.
func (f *Follower) Offset() int64 {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.off
}

// Close releases the follower's descriptor; a Read blocked in another goroutine
// returns an error wrapping os.ErrClosed.
func (f *Follower) Close() error {
	w := f.w
	w.mu.Lock()
	if f.closed {
		w.mu.Unlock()
		return nil
	}
	f.closed = true
	delete(w.followers, f)
	w.broadcastLocked()
	w.mu.Unlock()
	if f.f != nil {
		return f.f.Close()
	}
	return nil
}
