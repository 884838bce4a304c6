package rpmmd

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Bounds of the XML parsers. encoding/xml holds a whole token in memory (a
// text node, a name, an attribute value, a comment), keeps every open
// element and namespace declaration on a stack, and builds every attribute
// of a tag at once; none of that has a limit of its own, so a few MiB of
// compressed primary.xml holding one huge text node took a node to gigabytes.
// xmlReader bounds each of them; bytes past a bound are never read.
const (
	// MaxToken bounds one XML token of repomd.xml and primary.xml: an
	// element with its attributes, a text node, a comment, a CDATA section
	// or a directive. The longest tokens of real primary.xml files are
	// package descriptions of some KiB. The decoder builds all attributes
	// of a tag at once, and namespace declarations in it, some 50 bytes of
	// heap for each 5 bytes of input: a tag of MaxToken bytes costs some
	// MiB (13 MiB of heap at most in the tests).
	MaxToken = 256 << 10
	// MaxPackageSize bounds one <package> element of primary.xml. The
	// largest real ones (kernel modules, TeX Live and Go library packages
	// providing thousands of capabilities) are some hundred KiB.
	MaxPackageSize = 16 << 20
	// maxDepth bounds element nesting; primary.xml nests 5 deep
	// (metadata, package, format, rpm:provides, rpm:entry).
	maxDepth = 64
	// maxAttrs bounds the attributes of one element; rpm:entry has 6.
	maxAttrs = 64
	// maxField bounds the text kept for one field (a name, a checksum, a
	// size, a location...); a path is at most 4 KiB on Linux.
	maxField = 64 << 10
	// maxRepomdData bounds the <data> entries of repomd.xml; Fedora's
	// have about 20.
	maxRepomdData = 1024
)

// boundedReader is the io.ByteReader encoding/xml reads from: every byte
// goes through ReadByte, so the decoder can be stopped at an exact offset.
type boundedReader struct {
	r     *bufio.Reader
	n     int64  // bytes returned so far
	limit int64  // ReadByte fails once n reaches it
	why   string // what limit returns when reached, for the error
	err   error  // the limit error, once reached
}

func (b *boundedReader) ReadByte() (byte, error) {
	if b.n >= b.limit {
		return 0, b.exceeded()
	}
	c, err := b.r.ReadByte()
	if err != nil {
		return 0, err
	}
	b.n++
	return c, nil
}

// Read is never called by encoding/xml, which prefers ReadByte; it honours
// the limit all the same.
func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n >= b.limit {
		return 0, b.exceeded()
	}
	if rest := b.limit - b.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// exceeded returns the limit error, or io.EOF when the input ends right at
// the limit.
func (b *boundedReader) exceeded() error {
	if b.err == nil {
		if _, err := b.r.Peek(1); err == io.EOF {
			return io.EOF
		}
		b.err = fmt.Errorf("at byte %d: %w: %s", b.n, repoindex.ErrTooLarge, b.why)
	}
	return b.err
}

// xmlReader walks the tokens of an XML document within the bounds above.
type xmlReader struct {
	br    *boundedReader
	dec   *xml.Decoder
	depth int // elements open after the last token

	// end, when not zero, is the offset the element being read must end
	// by (MaxPackageSize); endWhy says so in the error.
	end    int64
	endWhy string
	// total, when not zero, bounds the whole document; totalWhy says so.
	total    int64
	totalWhy string
}

func newXMLReader(r io.Reader) *xmlReader {
	br := &boundedReader{r: bufio.NewReaderSize(r, 64<<10)}
	return &xmlReader{br: br, dec: xml.NewDecoder(br)}
}

var tokenTooLong = fmt.Sprintf("an XML token (a tag with its attributes, a text node, a comment, CDATA or a directive) longer than %d bytes", MaxToken)

// token returns the next token as xml.Decoder.Token does (CharData is only
// valid until the next call). Its errors wrap repoindex.ErrTooLarge when a
// bound is reached, io.EOF at the end, or the decoder's syntax error.
func (x *xmlReader) token() (xml.Token, error) {
	x.br.limit, x.br.why = x.br.n+MaxToken, tokenTooLong
	if x.end > 0 && x.end < x.br.limit {
		x.br.limit, x.br.why = x.end, x.endWhy
	}
	if x.total > 0 && x.total < x.br.limit {
		x.br.limit, x.br.why = x.total, x.totalWhy
	}
	tok, err := x.dec.Token()
	if x.br.err != nil {
		// Whatever the decoder made of the failed read (it may even
		// return the text read so far as a token), the bound decides.
		return nil, x.br.err
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case xml.StartElement:
		x.depth++
		if x.depth > maxDepth {
			return nil, fmt.Errorf("at byte %d: %w: elements nested more than %d deep", x.br.n, repoindex.ErrTooLarge, maxDepth)
		}
		if len(t.Attr) > maxAttrs {
			return nil, fmt.Errorf("at byte %d: %w: element <%s> has %d attributes, more than %d", x.br.n, repoindex.ErrTooLarge, clip(t.Name.Local), len(t.Attr), maxAttrs)
		}
	case xml.EndElement:
		x.depth--
	}
	return tok, nil
}

// bound makes the element whose start tag was just read end within max
// bytes from here; unbound lifts that.
func (x *xmlReader) bound(max int64, what string) {
	x.end = x.br.n + max
	x.endWhy = fmt.Sprintf("%s longer than %d bytes", what, max)
}

func (x *xmlReader) unbound() { x.end = 0 }

// attr returns the value of the attribute whose local name is local (in
// any namespace, as encoding/xml's struct tags match), "" when absent. An
// attribute given twice is an error: two parsers could pick different
// values.
func attr(t xml.StartElement, local string) (string, error) {
	v, found := "", false
	for _, a := range t.Attr {
		if a.Name.Local != local {
			continue
		}
		if found {
			return "", fmt.Errorf("<%s> has the attribute %s twice", t.Name.Local, local)
		}
		v, found = a.Value, true
	}
	return v, nil
}

// appendField appends text to a field, within maxField.
func appendField(dst []byte, text []byte, what string) ([]byte, error) {
	if len(dst)+len(text) > maxField {
		return nil, fmt.Errorf("%w: <%s> text longer than %d bytes", repoindex.ErrTooLarge, what, maxField)
	}
	return append(dst, text...), nil
}
