package origin

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// contentRange is a parsed Content-Range of a 206 answer: bytes First
// through Last (inclusive) of a representation of Total bytes (-1 when the
// server wrote "*").
type contentRange struct {
	First, Last, Total int64
}

// parseContentRange parses a Content-Range header of a single-part 206
// answer strictly (RFC 9110, 14.4): "bytes FIRST-LAST/TOTAL" or
// "bytes FIRST-LAST/*", decimal digits only (no sign, no space, no leading
// "+"), FIRST <= LAST, LAST < TOTAL. The unsatisfied form "bytes */TOTAL"
// belongs to a 416 and is refused.
func parseContentRange(s string) (contentRange, error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return contentRange{}, errors.New(`does not start with "bytes "`)
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return contentRange{}, errors.New(`no "/" before the complete length`)
	}
	first, last, ok := strings.Cut(span, "-")
	if !ok {
		return contentRange{}, errors.New(`no "-" in the range`)
	}
	var cr contentRange
	var err error
	if cr.First, err = parseDigits(first); err != nil {
		return contentRange{}, fmt.Errorf("first byte: %w", err)
	}
	if cr.Last, err = parseDigits(last); err != nil {
		return contentRange{}, fmt.Errorf("last byte: %w", err)
	}
	if cr.First > cr.Last {
		return contentRange{}, fmt.Errorf("first byte %d after last byte %d", cr.First, cr.Last)
	}
	if total == "*" {
		cr.Total = -1
		return cr, nil
	}
	if cr.Total, err = parseDigits(total); err != nil {
		return contentRange{}, fmt.Errorf("complete length: %w", err)
	}
	if cr.Last >= cr.Total {
		return contentRange{}, fmt.Errorf("last byte %d not before the complete length %d", cr.Last, cr.Total)
	}
	return cr, nil
}

// parseDigits parses a non-negative decimal of 1 to 18 digits (so that it
// fits an int64 with room for a +1).
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("%q is not a number of 1 to 18 digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// rangeBody is the body of a 206 answer: Last-First+1 bytes, never more
// (bytes past the range are not read), and fewer is an error. When the range
// ends before the file does (a server may send less than asked, RFC 9110
// 14.2), reaching its end is an error rather than io.EOF, so that the
// pipeline resumes from the next source instead of taking the file as
// complete.
type rangeBody struct {
	io.ReadCloser
	url    string
	left   int64 // bytes still due
	cr     contentRange
	failed error
}

func (b *rangeBody) Read(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	if b.left == 0 {
		return 0, b.end()
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	switch {
	case err == io.EOF && b.left > 0:
		b.failed = fmt.Errorf("origin %s: the body ended %d bytes before the end of the range %d-%d: %w", b.url, b.left, b.cr.First, b.cr.Last, io.ErrUnexpectedEOF)
		return n, b.failed
	case err == io.EOF || err == nil && b.left == 0:
		if n > 0 {
			return n, nil
		}
		return 0, b.end()
	}
	return n, err
}

// end is what a read past the range's last byte returns.
func (b *rangeBody) end() error {
	if b.cr.Total >= 0 && b.cr.Last+1 < b.cr.Total {
		b.failed = fmt.Errorf("origin %s sent bytes %d-%d of %d and stopped; the rest comes from the next source", b.url, b.cr.First, b.cr.Last, b.cr.Total)
		return b.failed
	}
	return io.EOF
}
