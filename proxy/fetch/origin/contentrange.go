package origin

import (
	"fmt"
	"io"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

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
	cr     fetch.ContentRange
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
