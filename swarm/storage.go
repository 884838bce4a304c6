package swarm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// errReadOnly is returned when the library tries to write into a seeded blob.
var errReadOnly = errors.New("seeded blob is read-only")

// blobStorage serves one seeded torrent straight from the verified blob file
// (no copy). Every piece is complete: the content store verified the whole
// file's SHA-256 before the blob was seeded. The file is opened on first read
// and closed again when idle (see closeIfIdle), so 10,000 seeded blobs do not
// hold 10,000 descriptors.
type blobStorage struct {
	blobs     Blobs
	hexDigest string
	size      int64
	onGone    func(err error) // called (once per failure) when the blob can no longer be read

	mu       sync.Mutex // protects f, lastUsed, reading
	f        *os.File
	lastUsed time.Time
	reading  int // reads in progress on f
}

var _ storage.ClientImpl = (*blobStorage)(nil)

func (s *blobStorage) OpenTorrent(_ context.Context, info *metainfo.Info, _ metainfo.Hash) (storage.TorrentImpl, error) {
	if info.TotalLength() != s.size {
		return storage.TorrentImpl{}, fmt.Errorf("seeding sha256:%s: info length %d differs from blob size %d", s.hexDigest, info.TotalLength(), s.size)
	}
	return storage.TorrentImpl{
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return blobPiece{s: s, off: p.Offset(), length: p.Length()}
		},
		Close: s.close,
	}, nil
}

func (s *blobStorage) readAt(b []byte, off int64) (int, error) {
	s.mu.Lock()
	if s.f == nil {
		f, size, err := s.blobs.OpenBlob(s.hexDigest)
		if err != nil {
			s.mu.Unlock()
			if s.onGone != nil {
				s.onGone(err)
			}
			return 0, fmt.Errorf("opening seeded blob sha256:%s: %w", s.hexDigest, err)
		}
		if size != s.size {
			f.Close()
			s.mu.Unlock()
			err := fmt.Errorf("seeded blob sha256:%s is %d bytes, expected %d", s.hexDigest, size, s.size)
			if s.onGone != nil {
				s.onGone(err)
			}
			return 0, err
		}
		s.f = f
	}
	f := s.f
	s.reading++
	s.mu.Unlock()
	n, err := f.ReadAt(b, off)
	s.mu.Lock()
	s.reading--
	s.lastUsed = time.Now()
	s.mu.Unlock()
	return n, err
}

// closeIfIdle closes the blob file when it has not been read for idle.
func (s *blobStorage) closeIfIdle(idle time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil && s.reading == 0 && time.Since(s.lastUsed) > idle {
		s.f.Close()
		s.f = nil
	}
}

func (s *blobStorage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		err := s.f.Close()
		s.f = nil
		return err
	}
	return nil
}

type blobPiece struct {
	s           *blobStorage
	off, length int64
}

func (p blobPiece) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.length {
		return 0, fmt.Errorf("reading sha256:%s: offset %d beyond piece of %d bytes", p.s.hexDigest, off, p.length)
	}
	if int64(len(b)) > p.length-off {
		b = b[:p.length-off]
	}
	return p.s.readAt(b, p.off+off)
}

func (p blobPiece) WriteAt([]byte, int64) (int, error) { return 0, errReadOnly }
func (p blobPiece) MarkComplete() error                { return nil }

// MarkNotComplete is called when the library found a piece of the blob that
// does not match its hash: the file changed under us. Stop seeding it.
func (p blobPiece) MarkNotComplete() error {
	if p.s.onGone != nil {
		p.s.onGone(fmt.Errorf("a piece at offset %d failed its hash check: the blob file changed on disk", p.off))
	}
	return nil
}

func (p blobPiece) Completion() storage.Completion {
	return storage.Completion{Ok: true, Complete: true}
}

// scratchStorage holds a download in progress: one sparse file under
// DataDir/scratch, piece completion in memory only. Close deletes the file;
// nothing in it is ever taken as complete without the library hashing it.
type scratchStorage struct {
	path string

	mu       sync.Mutex // protects f, complete
	f        *os.File
	complete []bool
}

var _ storage.ClientImpl = (*scratchStorage)(nil)

func (s *scratchStorage) OpenTorrent(_ context.Context, info *metainfo.Info, _ metainfo.Hash) (storage.TorrentImpl, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return storage.TorrentImpl{}, fmt.Errorf("creating download scratch file: %w", err)
	}
	if err := f.Truncate(info.TotalLength()); err != nil {
		f.Close()
		os.Remove(s.path)
		return storage.TorrentImpl{}, fmt.Errorf("sizing download scratch file %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.f = f
	s.complete = make([]bool, info.NumPieces())
	s.mu.Unlock()
	return storage.TorrentImpl{
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return scratchPiece{s: s, index: p.Index(), off: p.Offset(), length: p.Length()}
		},
		Close: s.close,
	}, nil
}

// scratchCloseGrace keeps a dropped download's scratch file readable for a
// moment. anacrolix/torrent v1.61.0 reads piece data for a peer request
// with the client lock released; if the torrent is dropped meanwhile and the
// read fails, its servePeerRequest panics (the request is left in
// unreadPeerRequests when the torrent is closed). A read that succeeds takes
// the "no longer wanted" path instead.
const scratchCloseGrace = 10 * time.Second

// close is the storage's Close: it schedules the file's removal after
// scratchCloseGrace (see there). Node.New removes leftovers of a crash.
func (s *scratchStorage) close() error {
	time.AfterFunc(scratchCloseGrace, func() { s.closeNow() })
	return nil
}

func (s *scratchStorage) closeNow() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

func (s *scratchStorage) file() (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, fmt.Errorf("download scratch file %s is closed", s.path)
	}
	return s.f, nil
}

type scratchPiece struct {
	s           *scratchStorage
	index       int
	off, length int64
}

func (p scratchPiece) ReadAt(b []byte, off int64) (int, error) {
	f, err := p.s.file()
	if err != nil {
		return 0, err
	}
	if int64(len(b)) > p.length-off {
		b = b[:max(0, p.length-off)]
	}
	return f.ReadAt(b, p.off+off)
}

func (p scratchPiece) WriteAt(b []byte, off int64) (int, error) {
	f, err := p.s.file()
	if err != nil {
		return 0, err
	}
	if int64(len(b)) > p.length-off {
		return 0, fmt.Errorf("write of %d bytes at %d overflows piece %d", len(b), off, p.index)
	}
	return f.WriteAt(b, p.off+off)
}

func (p scratchPiece) MarkComplete() error    { p.set(true); return nil }
func (p scratchPiece) MarkNotComplete() error { p.set(false); return nil }

func (p scratchPiece) set(v bool) {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.index < len(p.s.complete) {
		p.s.complete[p.index] = v
	}
}

func (p scratchPiece) Completion() storage.Completion {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return storage.Completion{Ok: true, Complete: p.index < len(p.s.complete) && p.s.complete[p.index]}
}
