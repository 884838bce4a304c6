package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// Every decoder must, on any input, either fail with an error wrapping
// errCorrupt or return a value whose encoding is exactly the input (one value,
// one encoding).

func checkDecode[T any](t *testing.T, data []byte, decode func([]byte) (T, error), encode func(T) []byte) {
	v, err := decode(data)
	if err != nil {
		if !errors.Is(err, errCorrupt) || !strings.HasPrefix(err.Error(), "store: decode ") {
			t.Fatalf("decode error %q does not wrap errCorrupt or lacks context", err)
		}
		return
	}
	if re := encode(v); !bytes.Equal(re, data) {
		t.Fatalf("decode(%x) = %+v re-encodes to %x", data, v, re)
	}
}

func seedTimes() []time.Time {
	return []time.Time{{}, time.Unix(0, 0), time.Date(2025, 3, 1, 12, 0, 0, 999_999_999, time.UTC), time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Unix(-1e10, 5)}
}

func FuzzDecodeURLEntry(f *testing.F) {
	for _, tm := range seedTimes() {
		b := encodeURLEntry(URLEntry{Digest: DigestOf([]byte("x")), Size: 12345, ContentType: "application/x-rpm", LastModified: "Sat, 01 Mar 2025 12:00:00 GMT", ETag: `W/"e"`, Fetched: tm, Verified: true})
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(encodeURLEntry(URLEntry{}))
	f.Add([]byte{})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data, decodeURLEntry, encodeURLEntry) })
}

func FuzzDecodeExpect(f *testing.F) {
	f.Add(encodeExpect(Expect{SHA256: DigestOf([]byte("x")), Size: -1, Root: "http://deb.example.org/debian/dists/bookworm/InRelease"}))
	f.Add(encodeExpect(Expect{}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data, decodeExpect, encodeExpect) })
}

func FuzzDecodeRootRecord(f *testing.F) {
	for _, tm := range seedTimes() {
		f.Add(encodeRootRecord(RootRecord{Repo: "r", URL: "http://x/InRelease", Digest: DigestOf([]byte("r")), Date: tm, ValidUntil: tm.Add(time.Hour), Signer: "A1B2", Accepted: tm, Untrusted: true, Detached: DigestOf([]byte("sig"))}))
	}
	f.Add(encodeRootRecord(RootRecord{}))
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data, decodeRootRecord, encodeRootRecord) })
}

func FuzzDecodeBlobRecord(f *testing.F) {
	f.Add(encodeBlobRecord(blobRecord{Size: 1 << 40, Seq: 99, Access: time.Unix(1700000000, 0)}))
	f.Add(encodeBlobRecord(blobRecord{}))
	f.Add([]byte{1, 0x80, 0x00, 0, 0}) // non-minimal varint
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data, decodeBlobRecord, encodeBlobRecord) })
}

func FuzzDecodePinHeader(f *testing.F) {
	f.Add(encodePinHeader(pinHeader{Gen: 3, Count: 60000}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data, decodePinHeader, encodePinHeader) })
}

func FuzzDecodePinChunk(f *testing.F) {
	d := DigestOf([]byte("a"))
	f.Add(append(d[:], d[:]...))
	f.Add(d[:31])
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := decodePinChunk(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		var re []byte
		for _, d := range ds {
			re = append(re, d[:]...)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("chunk round trip changed %x to %x", data, re)
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	f.Add(DigestOf(nil).String())
	f.Add("")
	f.Add(strings.Repeat("g", 64))
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "store: parse digest") {
				t.Fatalf("error lacks context: %v", err)
			}
			return
		}
		if !strings.EqualFold(d.String(), s) {
			t.Fatalf("ParseDigest(%q) = %s", s, d)
		}
	})
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tm := range seedTimes() {
		e := URLEntry{Digest: DigestOf([]byte("x")), Size: 7, ContentType: "a", LastModified: "b", ETag: "c", Fetched: tm, Verified: true}
		got, err := decodeURLEntry(encodeURLEntry(e))
		if err != nil || !got.Fetched.Equal(tm) || got.Digest != e.Digest || got.ETag != "c" || !got.Verified {
			t.Fatalf("URLEntry round trip of time %v: %+v, %v", tm, got, err)
		}
		if !tm.IsZero() && got.Fetched.Location() != time.UTC {
			t.Fatalf("decoded time not in UTC: %v", got.Fetched)
		}
	}
	if _, err := decodeURLEntry([]byte{9}); err == nil || !strings.Contains(err.Error(), "format version 9") {
		t.Fatalf("unknown version: %v", err)
	}
}
