package decompress

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ulikunitz/xz/lzma"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// xzScan passes an xz file through to the decoder while walking its
// container format (the xz file format, version 1.2.1: streams, blocks,
// LZMA2 chunks, index, footer, padding) so that the LZMA2 dictionary size
// of every block of every stream is checked before the decoder sees that
// block: github.com/ulikunitz/xz allocates a block's dictionary as its
// header asks, up to 4 GiB, and only the first block could be checked up
// front. Walking needs no decoding: LZMA2 chunk headers give their packed
// sizes. Anything it does not understand turns it into a plain
// pass-through, and the decoder reports the error: it refuses only a
// dictionary it has parsed.
type xzScan struct {
	r    io.Reader
	st   xzState
	skip int64  // bytes to pass over before the next header
	hdr  []byte // header bytes collected so far
	want int    // header length being collected
	err  error  // sticky: a refused dictionary

	checkLen  int   // of the current stream's blocks
	blockHdr  int   // size of the current block header
	packed    int64 // compressed bytes of the current block so far
	varints   int64 // index varints still to pass
	indexSize int64 // bytes of the index so far
}

type xzState int

const (
	xzStreamHeader xzState = iota // collecting the 12-byte stream header
	xzBlockOrIndex                // next byte starts a block header or the index
	xzBlockHeader                 // collecting a block header
	xzChunk                       // next byte is an LZMA2 control byte
	xzChunkHeader                 // collecting the rest of a chunk header
	xzIndexCount                  // in the index's record count varint
	xzIndexRecords                // in the index's records
	xzFooter                      // passing index padding, CRC and footer
	xzPadding                     // stream padding, or the next stream
	xzPass                        // not walking any more
)

func newXzScan(r io.Reader) *xzScan { return &xzScan{r: r, want: 12} }

func (x *xzScan) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	n, err := x.r.Read(p)
	if x.st != xzPass {
		if serr := x.scan(p[:n]); serr != nil {
			x.err = serr
			return 0, serr
		}
	}
	return n, err
}

// scan advances the walk over b.
func (x *xzScan) scan(b []byte) error {
	for len(b) > 0 && x.st != xzPass {
		if x.skip > 0 {
			k := min(x.skip, int64(len(b)))
			x.skip -= k
			b = b[k:]
			continue
		}
		c := b[0]
		b = b[1:]
		if err := x.step(c); err != nil {
			return err
		}
	}
	return nil
}

// collect adds c to the header being collected and reports whether it is
// complete.
func (x *xzScan) collect(c byte) bool {
	x.hdr = append(x.hdr, c)
	return len(x.hdr) == x.want
}

func (x *xzScan) expect(st xzState, n int) {
	x.st, x.hdr, x.want = st, x.hdr[:0], n
}

// step consumes one byte that is not skipped data.
func (x *xzScan) step(c byte) error {
	switch x.st {
	case xzStreamHeader:
		if !x.collect(c) {
			return nil
		}
		if string(x.hdr[:6]) != string(magicXz) {
			x.st = xzPass
			return nil
		}
		x.checkLen = xzCheckLen(x.hdr[7] & 0x0f)
		x.st = xzBlockOrIndex
	case xzBlockOrIndex:
		if c == 0 { // index indicator
			x.expect(xzIndexCount, 0)
			x.indexSize = 1
			return nil
		}
		x.blockHdr = (int(c) + 1) * 4
		x.expect(xzBlockHeader, x.blockHdr-1)
	case xzBlockHeader:
		if !x.collect(c) {
			return nil
		}
		if err := checkBlockDict(x.hdr); err != nil {
			return err
		}
		x.st, x.packed = xzChunk, 0
	case xzChunk:
		x.packed++
		switch {
		case c == 0: // end of the block's data: padding to 4, then the check
			x.skip = int64((4-(int64(x.blockHdr)+x.packed)%4)%4) + int64(x.checkLen)
			x.st = xzBlockOrIndex
		case c == 1 || c == 2: // uncompressed chunk: its size follows
			x.expect(xzChunkHeader, 3)
			x.hdr = append(x.hdr, c)
		case c >= 0x80: // LZMA chunk; properties follow for a reset of them
			n := 5
			if c >= 0xc0 {
				n = 6
			}
			x.expect(xzChunkHeader, n)
			x.hdr = append(x.hdr, c)
		default:
			x.st = xzPass
		}
	case xzChunkHeader:
		x.packed++
		if !x.collect(c) {
			return nil
		}
		var size int64
		if x.hdr[0] < 0x80 {
			size = int64(binary.BigEndian.Uint16(x.hdr[1:3])) + 1
		} else {
			size = int64(binary.BigEndian.Uint16(x.hdr[3:5])) + 1
		}
		x.skip, x.packed = size, x.packed+size
		x.st = xzChunk
	case xzIndexCount:
		x.indexSize++
		x.hdr = append(x.hdr, c)
		if c&0x80 != 0 {
			if len(x.hdr) > 9 {
				x.st = xzPass
			}
			return nil
		}
		count, n := binary.Uvarint(x.hdr)
		x.hdr = x.hdr[:0]
		if n <= 0 || count > 1<<40 {
			x.st = xzPass
			return nil
		}
		x.varints = 2 * int64(count)
		x.st = xzIndexRecords
		if x.varints == 0 {
			x.endIndex()
		}
	case xzIndexRecords:
		x.indexSize++
		if c&0x80 == 0 {
			if x.varints--; x.varints == 0 {
				x.endIndex()
			}
		}
	case xzPadding:
		if c == 0 {
			return nil
		}
		x.expect(xzStreamHeader, 12)
		return x.step(c)
	}
	return nil
}

// endIndex passes the index padding and CRC32 and the stream footer.
func (x *xzScan) endIndex() {
	x.skip = (4-x.indexSize%4)%4 + 4 + 12
	x.st = xzPadding
}

// xzCheckLen is the size of a block's check for a stream's check type.
func xzCheckLen(id byte) int {
	switch {
	case id == 0:
		return 0
	case id <= 3:
		return 4
	case id <= 6:
		return 8
	case id <= 9:
		return 16
	case id <= 12:
		return 32
	}
	return 64
}

// checkBlockDict refuses a block header (without its size byte) whose
// LZMA2 filter asks for a dictionary over maxLzmaDict.
func checkBlockDict(hdr []byte) error {
	if len(hdr) < 1 {
		return nil
	}
	flags := hdr[0]
	p := hdr[1:]
	uvarint := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	if flags&0x40 != 0 { // compressed size present
		if _, ok := uvarint(); !ok {
			return nil
		}
	}
	if flags&0x80 != 0 { // uncompressed size present
		if _, ok := uvarint(); !ok {
			return nil
		}
	}
	for range int(flags&3) + 1 {
		id, ok1 := uvarint()
		n, ok2 := uvarint()
		if !ok1 || !ok2 || n > uint64(len(p)) {
			return nil
		}
		props := p[:n]
		p = p[n:]
		const filterLZMA2 = 0x21
		if id == filterLZMA2 && len(props) == 1 {
			dict, err := lzma.DecodeDictCap(props[0])
			if err == nil && dict > maxLzmaDict {
				return fmt.Errorf("%w: LZMA2 dictionary of %d MiB exceeds the %d MiB accepted (xz -9 uses 64 MiB)", repoindex.ErrTooLarge, dict>>20, maxLzmaDict>>20)
			}
		}
	}
	return nil
}
