package rpmsig

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// rpm file layout (rpm's doc/manual/format.md): a 96-byte lead, the
// signature header padded to a multiple of 8 bytes, the main header, then the
// compressed payload up to end of file. A header is a 16-byte intro (magic
// 8e ad e8 01, 4 reserved bytes, index entry count il, data length dl), il
// 16-byte index entries (tag, type, offset, count, all big-endian int32) and
// dl bytes of data.

const (
	leadSize    = 96
	leadMagic   = 0xedabeedb
	headerMagic = 0x8eade801

	// rpm's own limit on index entries (lib/header.c, hdrchkTags); the
	// size of a header is bounded by MaxHeaderSize (budget.go).
	maxIndexEntries = 0xffff
)

// rpm tag data types.
const (
	typeNull        = 0
	typeChar        = 1
	typeInt8        = 2
	typeInt16       = 3
	typeInt32       = 4
	typeInt64       = 5
	typeString      = 6
	typeBin         = 7
	typeStringArray = 8
	typeI18NString  = 9
)

// Tags used here.
const (
	sigTagDSA = 267  // OpenPGP signature over the main header (DSA, EdDSA)
	sigTagRSA = 268  // OpenPGP signature over the main header (RSA)
	sigTagPGP = 1002 // legacy OpenPGP signature over header+payload
	sigTagGPG = 1005 // legacy OpenPGP signature over header+payload

	tagName              = 1000
	tagVersion           = 1001
	tagRelease           = 1002
	tagEpoch             = 1003
	tagArch              = 1022
	tagSourceRPM         = 1044
	tagSourcePackage     = 1106
	tagPayloadDigest     = 5092
	tagPayloadDigestAlgo = 5093
)

type indexEntry struct {
	typ, offset, count uint32
}

// header is one parsed rpm header. raw holds its exact bytes as read,
// intro included: the bytes header signatures are computed over.
type header struct {
	raw     []byte
	data    []byte
	entries map[uint32]indexEntry
	scanned uint64 // bytes of string data checkEntry has scanned
}

// readHeader reads one header from r. pad rounds the data length up to 8
// bytes (the signature header is padded so the main header is aligned).
// A header over MaxHeaderSize is refused (the error wraps
// repoindex.ErrTooLarge) before anything past its intro is read. When b is
// not nil, the header's memory is charged to it first (waiting while ctx
// allows); the caller releases charged once done with the header, also on
// error. A header up to exactUpTo is read into a buffer of its claimed
// size; a bigger one grows as bytes arrive, so a lying intro on a short
// input costs little.
func readHeader(ctx context.Context, r io.Reader, pad bool, b *budget) (h *header, charged int64, err error) {
	var intro [16]byte
	if _, err := io.ReadFull(r, intro[:]); err != nil {
		return nil, 0, fmt.Errorf("read header intro: %w", unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint32(intro[0:]); m != headerMagic {
		return nil, 0, fmt.Errorf("bad header magic %08x", m)
	}
	il := binary.BigEndian.Uint32(intro[8:])
	dl := binary.BigEndian.Uint32(intro[12:])
	if il < 1 || il > maxIndexEntries {
		return nil, 0, fmt.Errorf("header has %d index entries (allowed 1..%d)", il, maxIndexEntries)
	}
	total := 16 + int64(il)*16 + int64(dl)
	if total > MaxHeaderSize {
		return nil, 0, fmt.Errorf("%w: header of %d bytes (%d index entries, %d bytes of data) exceeds pkgswarm's limit of %d bytes (real headers are at most some tens of MiB)",
			repoindex.ErrTooLarge, total, il, dl, MaxHeaderSize)
	}
	if b != nil {
		charged = charge(total)
		if err := b.acquire(ctx, charged); err != nil {
			return nil, 0, err
		}
	}
	raw, err := readRaw(r, intro[:], total)
	if err != nil {
		return nil, charged, err
	}
	h = &header{
		raw:     raw,
		data:    raw[16+int(il)*16:],
		entries: make(map[uint32]indexEntry, il),
	}
	if pad {
		if p := (8 - dl%8) % 8; p > 0 {
			var skip [8]byte
			if _, err := io.ReadFull(r, skip[:p]); err != nil {
				return nil, charged, fmt.Errorf("read signature header padding: %w", unexpectedEOF(err))
			}
		}
	}
	for i := uint32(0); i < il; i++ {
		e := raw[16+i*16 : 32+i*16]
		tag := binary.BigEndian.Uint32(e[0:])
		ent := indexEntry{
			typ:    binary.BigEndian.Uint32(e[4:]),
			offset: binary.BigEndian.Uint32(e[8:]),
			count:  binary.BigEndian.Uint32(e[12:]),
		}
		if _, dup := h.entries[tag]; dup {
			return nil, charged, fmt.Errorf("tag %d appears twice in one header", tag)
		}
		if err := h.checkEntry(tag, ent); err != nil {
			return nil, charged, err
		}
		h.entries[tag] = ent
	}
	return h, charged, nil
}

// readRaw reads a header of total bytes whose intro was read already.
func readRaw(r io.Reader, intro []byte, total int64) ([]byte, error) {
	capacity := total
	if capacity > exactUpTo {
		capacity = exactUpTo
	}
	buf := make([]byte, len(intro), capacity)
	copy(buf, intro)
	for int64(len(buf)) < total {
		if len(buf) == cap(buf) {
			next := min(2*int64(cap(buf)), total)
			buf = append(make([]byte, 0, next), buf...)
		}
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return nil, fmt.Errorf("read header: got %d of %d bytes: %w", len(buf)-len(intro), total-int64(len(intro)), unexpectedEOF(err))
		}
	}
	return buf, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkEntry rejects an index entry whose data does not lie inside the data
// store, so accessors can slice without further checks.
func (h *header) checkEntry(tag uint32, e indexEntry) error {
	dl := uint64(len(h.data))
	if uint64(e.offset) > dl {
		return fmt.Errorf("tag %d: offset %d beyond header data (%d bytes)", tag, e.offset, dl)
	}
	if e.count == 0 && e.typ != typeNull {
		return fmt.Errorf("tag %d: zero count", tag)
	}
	var size uint64
	switch e.typ {
	case typeNull:
		return nil
	case typeChar, typeInt8, typeBin:
		size = uint64(e.count)
	case typeInt16:
		size = 2 * uint64(e.count)
	case typeInt32:
		size = 4 * uint64(e.count)
	case typeInt64:
		size = 8 * uint64(e.count)
	case typeString, typeStringArray, typeI18NString:
		if e.typ == typeString && e.count != 1 {
			return fmt.Errorf("tag %d: string with count %d", tag, e.count)
		}
		// count NUL-terminated strings; each takes at least one byte.
		if uint64(e.count) > dl-uint64(e.offset) {
			return fmt.Errorf("tag %d: %d strings cannot fit in the header data", tag, e.count)
		}
		p := h.data[e.offset:]
		for i := uint32(0); i < e.count; i++ {
			j := bytes.IndexByte(p, 0)
			if j < 0 {
				return fmt.Errorf("tag %d: unterminated string", tag)
			}
			p = p[j+1:]
		}
		// rpm writes each tag's data apart; tags whose strings overlap
		// could make this scan quadratic (65,535 tags over the same
		// MiBs), so the bytes scanned are bounded by twice the data.
		h.scanned += uint64(len(h.data)-int(e.offset)) - uint64(len(p))
		if h.scanned > 2*dl+4096 {
			return fmt.Errorf("tag %d: string data of several tags overlaps", tag)
		}
		return nil
	default:
		return fmt.Errorf("tag %d: unknown data type %d", tag, e.typ)
	}
	if size > dl-uint64(e.offset) {
		return fmt.Errorf("tag %d: %d bytes at offset %d overrun header data (%d bytes)", tag, size, e.offset, dl)
	}
	return nil
}

func (h *header) has(tag uint32) bool {
	_, ok := h.entries[tag]
	return ok
}

// bin returns a BIN tag's bytes, or nil when absent or of another type.
func (h *header) bin(tag uint32) []byte {
	e, ok := h.entries[tag]
	if !ok || e.typ != typeBin {
		return nil
	}
	return h.data[e.offset : e.offset+e.count]
}

// strs returns the strings of a STRING, STRING_ARRAY or I18NSTRING tag.
func (h *header) strs(tag uint32) []string {
	e, ok := h.entries[tag]
	if !ok || (e.typ != typeString && e.typ != typeStringArray && e.typ != typeI18NString) {
		return nil
	}
	out := make([]string, 0, e.count)
	p := h.data[e.offset:]
	for i := uint32(0); i < e.count; i++ {
		j := bytes.IndexByte(p, 0) // checkEntry proved it is there
		out = append(out, string(p[:j]))
		p = p[j+1:]
	}
	return out
}

// str returns the first string of a string tag, or "".
func (h *header) str(tag uint32) string {
	if s := h.strs(tag); len(s) > 0 {
		return s[0]
	}
	return ""
}

// int32s returns an INT32 tag's values.
func (h *header) int32s(tag uint32) []uint32 {
	e, ok := h.entries[tag]
	if !ok || e.typ != typeInt32 {
		return nil
	}
	out := make([]uint32, e.count)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(h.data[e.offset+uint32(i)*4:])
	}
	return out
}
