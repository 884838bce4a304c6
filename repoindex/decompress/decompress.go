package decompress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// ErrTooLarge is wrapped by the error a limited reader returns once the
// decompressed data would exceed its limit, and by the error refusing a
// window or dictionary over the decoders' bounds. It is
// repoindex.ErrTooLarge, which every bound of repoindex wraps.
var ErrTooLarge = repoindex.ErrTooLarge

// Compression extensions, as apt names them.
const (
	ExtGzip  = ".gz"
	ExtXz    = ".xz"
	ExtBzip2 = ".bz2"
	ExtZstd  = ".zst"
	ExtLz4   = ".lz4"
	ExtLzma  = ".lzma"
)

// extensions lists every extension Ext recognises.
var extensions = []string{ExtGzip, ExtXz, ExtBzip2, ExtZstd, ExtLz4, ExtLzma}

// Decoder limits: a decoder allocates the window or dictionary a header
// asks for, and touches as much of it as it writes output, so a header of a
// few bytes could take GiBs. xz and lzma at their highest preset (-9, -9e)
// use a 64 MiB dictionary, zstd up to level 19 an 8 MiB window and
// "--ultra -21" 64 MiB; what asks for more (zstd -22 or --long=27, a
// custom xz dictionary) is refused with an error wrapping ErrTooLarge, so
// that one decompression stays well under the 128 MiB a node may use.
const (
	maxZstdWindow = 64 << 20
	maxLzmaDict   = 64 << 20
)

// Ext returns the compression extension of name (one of the Ext* constants,
// compared case-insensitively), or "" when name is not compressed by a
// format this package knows.
func Ext(name string) string {
	for _, e := range extensions {
		if len(name) > len(e) && strings.EqualFold(name[len(name)-len(e):], e) {
			return e
		}
	}
	return ""
}

// TrimExt returns name without its compression extension, if it has one.
func TrimExt(name string) string {
	return name[:len(name)-len(Ext(name))]
}

// NewReader returns a reader of the data in r decompressed according to the
// extension of name (see Ext); a name without a known extension is read as
// is. Closing the result releases the decoder; it does not close r.
func NewReader(name string, r io.Reader) (io.ReadCloser, error) {
	return NewReaderLimit(name, r, 0)
}

// NewReaderLimit is NewReader with a limit of max decompressed bytes: the
// read that would pass it fails with an error wrapping ErrTooLarge. A max of
// zero or less means no limit.
func NewReaderLimit(name string, r io.Reader, max int64) (io.ReadCloser, error) {
	rc, err := open(Ext(name), r)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", name, err)
	}
	return limit(name, rc, max), nil
}

// Sniff returns a reader of the data in r decompressed according to its
// leading magic bytes: gzip, xz, zstd, bzip2, an lz4 frame, or (best effort,
// as that format has no magic number) an lzma-alone header; anything else is
// read as is. Closing the result releases the decoder; it does not close r.
func Sniff(r io.Reader) (io.ReadCloser, error) {
	return SniffLimit(r, 0)
}

// SniffLimit is Sniff with a limit of max decompressed bytes, as in
// NewReaderLimit.
func SniffLimit(r io.Reader, max int64) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("decompress: reading magic bytes: %w", err)
	}
	ext := Detect(head)
	rc, err := open(ext, br)
	if err != nil {
		return nil, fmt.Errorf("decompress: data sniffed as %s: %w", formatName(ext), err)
	}
	return limit("data sniffed as "+formatName(ext), rc, max), nil
}

// sniffLen is how many leading bytes Detect looks at at most.
const sniffLen = 13

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicLz4   = []byte{0x04, 0x22, 0x4d, 0x18}
	magicBzip2 = []byte{'B', 'Z', 'h'}
	// bzip2's block header magic (BCD pi) follows "BZh" and the level digit;
	// an empty bzip2 stream has the end-of-stream magic (sqrt pi) instead.
	magicBzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	magicBzip2End   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// Detect returns the compression extension that the leading bytes of some
// data indicate (see Sniff), or "" for data that looks uncompressed. head
// should hold the first 13 bytes, or all of the data if it is shorter.
func Detect(head []byte) string {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return ExtGzip
	case bytes.HasPrefix(head, magicXz):
		return ExtXz
	case bytes.HasPrefix(head, magicZstd):
		return ExtZstd
	case bytes.HasPrefix(head, magicLz4):
		return ExtLz4
	case len(head) >= 10 && bytes.HasPrefix(head, magicBzip2) && head[3] >= '1' && head[3] <= '9' &&
		(bytes.Equal(head[4:10], magicBzip2Block) || bytes.Equal(head[4:10], magicBzip2End)):
		return ExtBzip2
	case looksLzmaAlone(head):
		return ExtLzma
	}
	return ""
}

// looksLzmaAlone reports whether head starts like an lzma-alone header: a
// properties byte (lc, lp, pb) in range, a dictionary size of the form 2^n or
// 2^n + 2^(n-1) that xz and lzma write, and an uncompressed size that is
// "unknown" (all ones) or below 2^48. Plain text fails the dictionary test.
func looksLzmaAlone(head []byte) bool {
	if len(head) < lzma.HeaderLen {
		return false
	}
	if head[0] >= 9*5*5 {
		return false
	}
	dict := binary.LittleEndian.Uint32(head[1:5])
	if dict < 1<<12 {
		return false
	}
	if dict&(dict-1) != 0 { // not a power of two: must be 2^n + 2^(n-1)
		low := dict & -dict
		if dict != low|low<<1 {
			return false
		}
	}
	size := binary.LittleEndian.Uint64(head[5:13])
	return size == ^uint64(0) || size < 1<<48
}

func formatName(ext string) string {
	switch ext {
	case ExtGzip:
		return "gzip"
	case ExtXz:
		return "xz"
	case ExtBzip2:
		return "bzip2"
	case ExtZstd:
		return "zstd"
	case ExtLz4:
		return "lz4"
	case ExtLzma:
		return "lzma"
	}
	return "uncompressed"
}

// open returns the decoder for ext over r.
func open(ext string, r io.Reader) (io.ReadCloser, error) {
	switch ext {
	case "":
		return io.NopCloser(r), nil
	case ExtGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", eofIsTruncation(err))
		}
		return &formatReader{format: "gzip", r: zr, close: zr.Close}, nil
	case ExtXz:
		// Every block's dictionary is checked as the decoder reaches it;
		// the first one here already, so that a bad header fails at open.
		br := bufio.NewReader(newXzScan(r))
		if _, err := br.Peek(12 + 1024); err != nil && errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("xz: %w", err)
		}
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", eofIsTruncation(err))
		}
		return &formatReader{format: "xz", r: zr}, nil
	case ExtBzip2:
		return &formatReader{format: "bzip2", r: bzip2.NewReader(r)}, nil
	case ExtZstd:
		zr, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return &formatReader{format: "zstd", r: zr, close: func() error { zr.Close(); return nil }}, nil
	case ExtLz4:
		return &formatReader{format: "lz4", r: lz4.NewReader(r)}, nil
	case ExtLzma:
		zr, err := lzma.ReaderConfig{DictCap: maxLzmaDict}.NewReader(r)
		if err != nil {
			var dict *lzma.ErrDictSize
			if errors.As(err, &dict) {
				return nil, fmt.Errorf("lzma: %w: %v", ErrTooLarge, err)
			}
			return nil, fmt.Errorf("lzma: %w", eofIsTruncation(err))
		}
		return &formatReader{format: "lzma", r: zr}, nil
	}
	return nil, fmt.Errorf("unknown compression extension %q", ext)
}

func eofIsTruncation(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// formatReader names the format in decoder errors and closes the decoder.
type formatReader struct {
	format string
	r      io.Reader
	close  func() error // nil: nothing to release
	closed bool
}

func (f *formatReader) Read(p []byte) (int, error) {
	if f.closed {
		return 0, fmt.Errorf("%s: read after close", f.format)
	}
	n, err := f.r.Read(p)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, zstd.ErrWindowSizeExceeded):
		err = fmt.Errorf("%s: %w: %w (at most %d MiB: zstd -22 and --long=27 are refused)", f.format, ErrTooLarge, err, maxZstdWindow>>20)
	default:
		err = fmt.Errorf("%s: %w", f.format, err)
	}
	return n, err
}

func (f *formatReader) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	if f.close != nil {
		return f.close()
	}
	return nil
}

// limit wraps rc so that reading more than max bytes fails; max <= 0 means
// no limit. Every error but io.EOF is prefixed with what.
func limit(what string, rc io.ReadCloser, max int64) io.ReadCloser {
	return &limitReader{what: what, rc: rc, max: max}
}

type limitReader struct {
	what string
	rc   io.ReadCloser
	max  int64 // <= 0: unlimited
	n    int64 // bytes returned so far
	err  error // sticky error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.max > 0 {
		if l.n >= l.max {
			// At the limit: the data may end exactly here. Look for one more byte.
			var one [1]byte
			n, err := io.ReadFull(l.rc, one[:])
			if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
				l.err = io.EOF
				return 0, io.EOF
			}
			if n > 0 {
				l.err = fmt.Errorf("decompress %s: %w (limit %d bytes)", l.what, ErrTooLarge, l.max)
			} else {
				l.err = fmt.Errorf("decompress %s: %w", l.what, err)
			}
			return 0, l.err
		}
		if rest := l.max - l.n; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := l.rc.Read(p)
	l.n += int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompress %s: %w", l.what, err)
		l.err = err
	}
	return n, err
}

func (l *limitReader) Close() error { return l.rc.Close() }
