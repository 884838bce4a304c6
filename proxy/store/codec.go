package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Index values are encoded compactly in binary: a one-byte format version, then
// fields in a fixed order (digests as 32 raw bytes, integers as varints, strings
// and times length- or flag-prefixed). Decoders reject trailing bytes, so every
// value has exactly one encoding.

const codecVersion = 1

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt index value")

type encoder struct{ b []byte }

func newEncoder(sizeHint int) *encoder {
	e := &encoder{b: make([]byte, 0, sizeHint+1)}
	e.b = append(e.b, codecVersion)
	return e
}

func (e *encoder) digest(d Digest) { e.b = append(e.b, d[:]...) }
func (e *encoder) varint(v int64)  { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) uvarint(v uint64) {
	e.b = binary.AppendUvarint(e.b, v)
}
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) byte(v byte) { e.b = append(e.b, v) }

// time encodes the zero time as a single 0 byte, anything else as 1, seconds,
// nanoseconds. Times decode in UTC without a monotonic reading.
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// maxUnixSeconds bounds decoded times (about ±34,800 years) so that every decoded
// time re-encodes to the same bytes.
const maxUnixSeconds = 1 << 40

type decoder struct {
	what    string // what is being decoded, for errors
	b       []byte
	err     error
	scratch [binary.MaxVarintLen64]byte
}

func newDecoder(what string, b []byte) *decoder {
	d := &decoder{what: what, b: b}
	if len(b) == 0 {
		d.fail("empty value")
		return d
	}
	if b[0] != codecVersion {
		d.fail(fmt.Sprintf("format version %d, this build reads %d", b[0], codecVersion))
		return d
	}
	d.b = b[1:]
	return d
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("store: decode %s: %s: %w", d.what, msg, errCorrupt)
	}
	d.b = nil
}

func (d *decoder) digest() (g Digest) {
	if d.err != nil {
		return
	}
	if len(d.b) < len(g) {
		d.fail("short digest")
		return
	}
	copy(g[:], d.b)
	d.b = d.b[len(g):]
	return
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n != len(binary.AppendVarint(d.scratch[:0], v)) {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	if n != len(binary.AppendUvarint(d.scratch[:0], v)) {
		d.fail("non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("short value")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("string length %d exceeds remaining %d bytes", n, len(d.b)))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	switch d.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("bad time flag")
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail("nanoseconds out of range")
		return time.Time{}
	}
	if sec < -maxUnixSeconds || sec > maxUnixSeconds {
		d.fail(fmt.Sprintf("time %d s from the Unix epoch is out of range", sec))
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() {
		// The zero time has its own encoding; accepting it here too would give
		// one value two encodings.
		d.fail("zero time encoded as non-zero")
		return time.Time{}
	}
	return t
}

// flags reads a flag byte and rejects bits outside mask.
func (d *decoder) flags(mask byte) byte {
	v := d.byte()
	if v&^mask != 0 {
		d.fail(fmt.Sprintf("unknown flag bits %#x", v&^mask))
		return 0
	}
	return v
}

func (d *decoder) size() int64 {
	v := d.varint()
	if v < 0 {
		d.fail(fmt.Sprintf("negative size %d", v))
		return 0
	}
	return v
}

// more reports whether bytes remain (for fields added to a record later).
func (d *decoder) more() bool { return d.err == nil && len(d.b) > 0 }

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

const flagVerified = 1

func encodeURLEntry(e URLEntry) []byte {
	enc := newEncoder(64 + len(e.ContentType) + len(e.LastModified) + len(e.ETag))
	enc.digest(e.Digest)
	enc.varint(e.Size)
	enc.str(e.ContentType)
	enc.str(e.LastModified)
	enc.str(e.ETag)
	enc.time(e.Fetched)
	var f byte
	if e.Verified {
		f |= flagVerified
	}
	enc.byte(f)
	return enc.b
}

func decodeURLEntry(b []byte) (URLEntry, error) {
	d := newDecoder("URL entry", b)
	var e URLEntry
	e.Digest = d.digest()
	e.Size = d.size()
	e.ContentType = d.str()
	e.LastModified = d.str()
	e.ETag = d.str()
	e.Fetched = d.time()
	e.Verified = d.flags(flagVerified)&flagVerified != 0
	if err := d.finish(); err != nil {
		return URLEntry{}, err
	}
	return e, nil
}

func encodeExpect(x Expect) []byte {
	return appendExpect(make([]byte, 0, 1+len(x.SHA256)+2*binary.MaxVarintLen64+len(x.Root)), x)
}

// appendExpect appends the encoding of x to b.
func appendExpect(b []byte, x Expect) []byte {
	enc := encoder{b: append(b, codecVersion)}
	enc.digest(x.SHA256)
	enc.varint(x.Size)
	enc.str(x.Root)
	return enc.b
}

func decodeExpect(b []byte) (Expect, error) {
	d := newDecoder("expectation", b)
	var x Expect
	x.SHA256 = d.digest()
	x.Size = d.varint() // -1 is allowed: size unknown
	x.Root = d.str()
	if err := d.finish(); err != nil {
		return Expect{}, err
	}
	return x, nil
}

const flagUntrusted = 1

// maxRootKeys bounds the keys a repository is bound to.
const maxRootKeys = 64

func encodeRootRecord(r RootRecord) []byte {
	enc := newEncoder(128 + len(r.Repo) + len(r.URL) + len(r.Signer))
	enc.str(r.Repo)
	enc.str(r.URL)
	enc.digest(r.Digest)
	enc.time(r.Date)
	enc.time(r.ValidUntil)
	enc.str(r.Signer)
	enc.time(r.Accepted)
	var f byte
	if r.Untrusted {
		f |= flagUntrusted
	}
	enc.byte(f)
	enc.digest(r.Detached)
	// Fields added later; records written before them end here.
	enc.uvarint(uint64(len(r.Keys)))
	for _, k := range r.Keys {
		enc.str(k)
	}
	enc.str(r.Suite)
	enc.str(r.Codename)
	return enc.b
}

func decodeRootRecord(b []byte) (RootRecord, error) {
	d := newDecoder("root record", b)
	var r RootRecord
	r.Repo = d.str()
	r.URL = d.str()
	r.Digest = d.digest()
	r.Date = d.time()
	r.ValidUntil = d.time()
	r.Signer = d.str()
	r.Accepted = d.time()
	r.Untrusted = d.flags(flagUntrusted)&flagUntrusted != 0
	r.Detached = d.digest()
	if d.more() {
		n := d.uvarint()
		if n > maxRootKeys {
			d.fail(fmt.Sprintf("%d bound keys, more than %d", n, maxRootKeys))
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			r.Keys = append(r.Keys, d.str())
		}
		r.Suite = d.str()
		r.Codename = d.str()
	}
	if err := d.finish(); err != nil {
		return RootRecord{}, err
	}
	return r, nil
}

// blobRecord is the index entry of one blob file: its size, its place in LRU order
// (a logical clock, larger is more recent) and the wall time of its last access.
type blobRecord struct {
	Size   int64
	Seq    uint64
	Access time.Time
}

func encodeBlobRecord(r blobRecord) []byte {
	enc := newEncoder(24)
	enc.varint(r.Size)
	enc.uvarint(r.Seq)
	enc.time(r.Access)
	return enc.b
}

func decodeBlobRecord(b []byte) (blobRecord, error) {
	d := newDecoder("blob record", b)
	var r blobRecord
	r.Size = d.size()
	r.Seq = d.uvarint()
	r.Access = d.time()
	if err := d.finish(); err != nil {
		return blobRecord{}, err
	}
	return r, nil
}

// pinHeader names the current generation of a pin set and how many digests it
// holds; the digests are stored in chunks under keys carrying that generation.
type pinHeader struct {
	Gen   uint64
	Count uint64
}

func encodePinHeader(h pinHeader) []byte {
	enc := newEncoder(20)
	enc.uvarint(h.Gen)
	enc.uvarint(h.Count)
	return enc.b
}

func decodePinHeader(b []byte) (pinHeader, error) {
	d := newDecoder("pin set header", b)
	var h pinHeader
	h.Gen = d.uvarint()
	h.Count = d.uvarint()
	if err := d.finish(); err != nil {
		return pinHeader{}, err
	}
	return h, nil
}

// decodePinChunk splits a chunk value (concatenated raw digests) into digests.
func decodePinChunk(b []byte) ([]Digest, error) {
	if len(b)%len(Digest{}) != 0 {
		return nil, fmt.Errorf("store: decode pin chunk: length %d is not a multiple of %d: %w", len(b), len(Digest{}), errCorrupt)
	}
	ds := make([]Digest, len(b)/len(Digest{}))
	for i := range ds {
		copy(ds[i][:], b[i*len(Digest{}):])
	}
	return ds, nil
}
