package apt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// maxLine bounds one line of a control file. Debian's longest lines (Binary:
// of a large source package, Provides: of Rust library packages listing
// every feature) are some hundred KiB. A line past the 64 KiB buffer is
// assembled in a buffer that doubles, so the longest costs at most about
// three times maxLine while it is read.
const maxLine = 8 << 20

// lineReader reads the lines of a deb822 control file with few
// allocations: a line is a slice into the bufio buffer, valid until the next
// call, unless it was longer than the buffer.
type lineReader struct {
	br   *bufio.Reader
	n    int    // number of the line last returned, from 1
	long []byte // assembles lines longer than the bufio buffer
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its line ending ("\n" or "\r\n"), or
// io.EOF after the last line.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		if cap(lr.long) > 1<<20 {
			lr.long = nil // do not keep a long line's buffer for ever
		}
		lr.long = append(lr.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(lr.long) > maxLine {
				lr.long = nil
				return nil, fmt.Errorf("line %d: %w: longer than %d bytes", lr.n+1, repoindex.ErrTooLarge, maxLine)
			}
			line, err = lr.br.ReadSlice('\n')
			lr.long = appendDoubling(lr.long, line)
		}
		line = lr.long
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("line %d: %w", lr.n+1, err)
	}
	if len(line) == 0 && err == io.EOF {
		return nil, io.EOF
	}
	lr.n++
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}

// appendDoubling is append that at least doubles the capacity when it
// grows, so a long line is copied a few times, not once per 25% of growth
// (what append does past 256 elements), which left hundreds of MiB of
// garbage behind a line of 16 MiB.
func appendDoubling(dst, src []byte) []byte {
	if n := len(dst) + len(src); n > cap(dst) {
		grown := make([]byte, len(dst), max(2*cap(dst), n))
		copy(grown, dst)
		dst = grown
	}
	return append(dst, src...)
}

// lineKind classifies a control file line.
type lineKind int

const (
	lineBlank        lineKind = iota // paragraph separator (empty or only blanks)
	lineField                        // "Name: value"
	lineContinuation                 // starts with a space or tab
	lineComment                      // starts with '#'
)

// splitLine classifies line and, for a field, returns its name and value
// with surrounding blanks trimmed. A line that is none of the kinds is an
// error.
func splitLine(line []byte) (kind lineKind, name, value []byte, err error) {
	if len(bytes.Trim(line, " \t")) == 0 {
		return lineBlank, nil, nil, nil
	}
	switch line[0] {
	case ' ', '\t':
		return lineContinuation, nil, bytes.Trim(line, " \t"), nil
	case '#':
		return lineComment, nil, nil, nil
	case '-':
		// deb822 forbids a field name starting with '-'; here it is most
		// likely an OpenPGP armor line left in the data.
		return 0, nil, nil, fmt.Errorf("unexpected line %q (is the file still clearsigned?)", clip(line))
	}
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return 0, nil, nil, fmt.Errorf("expected \"Field: value\", got %q", clip(line))
	}
	name = line[:i]
	if bytes.ContainsAny(name, " \t") {
		return 0, nil, nil, fmt.Errorf("field name %q contains a blank", clip(name))
	}
	return lineField, name, bytes.Trim(line[i+1:], " \t"), nil
}

// clip shortens b for an error message.
func clip(b []byte) string {
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// fieldIs reports whether the field name equals want, ignoring case as
// deb822 does.
func fieldIs(name []byte, want string) bool {
	return len(name) == len(want) && (string(name) == want || strings.EqualFold(string(name), want))
}

var errUnsafePath = errors.New("unsafe path")

// cleanRelPath checks that p is a relative path that stays inside the
// directory it is relative to — not empty, not absolute, no ".." segment, no
// control characters or backslashes — and returns it cleaned ("./a//b" →
// "a/b"). The error wraps errUnsafePath.
func cleanRelPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty", errUnsafePath)
	}
	if p[0] == '/' {
		return "", fmt.Errorf("%w %q: absolute", errUnsafePath, p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w %q: control character or backslash", errUnsafePath, p)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w %q: \"..\" segment", errUnsafePath, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", fmt.Errorf("%w %q: names no file", errUnsafePath, p)
	}
	return c, nil
}

// parseHex32 decodes a 64-digit hex SHA-256 into dst.
func parseHex32(dst *[32]byte, s []byte) error {
	if len(s) != 64 {
		return fmt.Errorf("SHA256 %q: want 64 hex digits, got %d characters", clip(s), len(s))
	}
	for i := range 32 {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return fmt.Errorf("SHA256 %q: not hexadecimal", clip(s))
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseSize parses a non-negative decimal byte count without allocating.
func parseSize(s []byte) (int64, error) {
	if len(s) == 0 || len(s) > 18 {
		return 0, fmt.Errorf("size %q: not a byte count", clip(s))
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("size %q: not a byte count", clip(s))
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}
