package rpmsig

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
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

	// Limits from rpm's lib/header.c (hdrchkTags, hdrchkData): rpm refuses
	// headers beyond them, so a valid package never needs more.
	maxIndexEntries = 0xffff
	maxDataBytes    = 256 << 20
	// The signature header is small in practice (a few KiB; with file
	// signatures or fs-verity data it can reach some MiB).
	maxSigDataBytes = 64 << 20
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
}

// readHeader reads one header from r. pad rounds the data length up to 8
// bytes (the signature header is padded so the main header is aligned).
// Memory grows with the bytes actually read, never with what the intro
// claims, so a lying intro on a short input costs nothing.
func readHeader(r io.Reader, maxData uint32, pad bool) (*header, error) {
	var intro [16]byte
	if _, err := io.ReadFull(r, intro[:]); err != nil {
		return nil, fmt.Errorf("read header intro: %w", unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint32(intro[0:]); m != headerMagic {
		return nil, fmt.Errorf("bad header magic %08x", m)
	}
	il := binary.BigEndian.Uint32(intro[8:])
	dl := binary.BigEndian.Uint32(intro[12:])
	if il < 1 || il > maxIndexEntries {
		return nil, fmt.Errorf("header has %d index entries (allowed 1..%d)", il, maxIndexEntries)
	}
	if dl > maxData {
		return nil, fmt.Errorf("header data length %d exceeds the limit of %d bytes", dl, maxData)
	}
	n := int64(il)*16 + int64(dl)
	var buf bytes.Buffer
	buf.Write(intro[:])
	if got, err := io.CopyN(&buf, r, n); err != nil {
		return nil, fmt.Errorf("read header: got %d of %d bytes: %w", got, n, unexpectedEOF(err))
	}
	raw := buf.Bytes()
	h := &header{
		raw:     raw,
		data:    raw[16+int(il)*16:],
		entries: make(map[uint32]indexEntry, il),
	}
	if pad {
		if p := (8 - dl%8) % 8; p > 0 {
			var skip [8]byte
			if _, err := io.ReadFull(r, skip[:p]); err != nil {
				return nil, fmt.Errorf("read signature header padding: %w", unexpectedEOF(err))
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
			return nil, fmt.Errorf("tag %d appears twice in one header", tag)
		}
		if err := h.checkEntry(tag, ent); err != nil {
			return nil, err
		}
		h.entries[tag] = ent
	}
	return h, nil
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
