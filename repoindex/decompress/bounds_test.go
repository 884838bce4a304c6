package decompress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"hash/crc32"
	"io"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

// TestBombsWithinBudget: a bomb in every format (256 MiB of zeros in some
// hundred bytes to a MiB; lzma-alone 48 MiB) fails with ErrTooLarge at the
// 64 MiB limit while the heap grows by less than 32 MiB: the decoders'
// windows and buffers, nothing that grows with the output.
func TestBombsWithinBudget(t *testing.T) {
	const limit = 64 << 20
	for _, ext := range limittest.Formats {
		t.Run(ext, func(t *testing.T) {
			size := int64(256 << 20)
			if ext == ExtLzma {
				size = 48 << 20
			}
			data := limittest.Bomb(t, ext, nil, []byte{0}, size, nil)
			for _, sniff := range []bool{false, true} {
				m := limittest.Start(32 << 20)
				var rc io.ReadCloser
				var err error
				if sniff {
					rc, err = SniffLimit(bytes.NewReader(data), limit)
				} else {
					rc, err = NewReaderLimit("bomb"+ext, bytes.NewReader(data), limit)
				}
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, m.Reader(rc))
				rc.Close()
				m.Check(t, ext)
				wantN := int64(limit)
				if ext == ExtLzma {
					wantN = size // under the limit: it ends first
				}
				if ext != ExtLzma && !errors.Is(err, ErrTooLarge) || n != wantN {
					t.Fatalf("%d-byte bomb (sniff=%v): %d bytes, %v; want %d bytes and ErrTooLarge", len(data), sniff, n, err, wantN)
				}
			}
		})
	}
}

// xzWithDict returns data compressed by the xz package with the LZMA2
// dictionary byte of its (only) block header set to code.
func xzWithDict(t *testing.T, data []byte, code byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	out := buf.Bytes()
	blk := out[12:]
	size := (int(blk[0]) + 1) * 4
	i := bytes.Index(blk[:size], []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", blk[:size])
	}
	hdr := out[12 : 12+size]
	hdr[i+2] = code
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))
	return out
}

// TestXzEveryDictionaryChecked: a huge dictionary in a later stream or
// block, not only in the first, is refused before the decoder allocates
// it (a second stream asking for 1 GiB made the decoder allocate 1 GiB).
func TestXzEveryDictionaryChecked(t *testing.T) {
	big := bytes.Repeat([]byte("Package: a\n"), 1<<20)
	good := xzWithDict(t, []byte("Package: a\n"), 22) // 8 MiB... as written
	huge := xzWithDict(t, big, 36)                    // 1 GiB
	if got := readAll(t)(NewReader("ok.xz", bytes.NewReader(good))); string(got) != "Package: a\n" {
		t.Fatalf("unpatched stream: %q", got)
	}
	// A first stream long enough that opening does not reach the second.
	first := compressWith(t, tool{ExtXz, []string{"xz", "-c", "-0"}}, sample(64<<10))
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"second stream", append(append([]byte{}, first...), huge...)},
		{"first stream, tiny", append(append([]byte{}, good...), huge...)},
	} {
		m := limittest.Start(64 << 20)
		rc, err := NewReader(tc.name+".xz", bytes.NewReader(tc.data))
		if err == nil { // refused at open or when the decoder reaches it
			_, err = io.Copy(io.Discard, m.Reader(rc))
			rc.Close()
		}
		m.Check(t, tc.name+" asking for a 1 GiB dictionary")
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: got %v, want ErrTooLarge", tc.name, err)
		}
		t.Log(err)
	}
	// Two blocks in one stream, the second asking for 1 GiB: xz -T2
	// writes several blocks; patch the second one's header.
	two := compressWith(t, tool{ExtXz, []string{"xz", "-c", "-0", "-T2", "--block-size=65536"}}, sample(200<<10))
	s := newXzScan(bytes.NewReader(two))
	var offsets []int
	for off := 0; off < len(two); off++ {
		st := s.st
		if err := s.scan(two[off : off+1]); err != nil {
			t.Fatal(err)
		}
		if st == xzBlockOrIndex && s.st == xzBlockHeader {
			offsets = append(offsets, off)
		}
	}
	if len(offsets) < 2 {
		t.Fatalf("xz wrote %d blocks, want several", len(offsets))
	}
	patched := bytes.Clone(two)
	hdr := patched[offsets[1] : offsets[1]+(int(two[offsets[1]])+1)*4]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	hdr[i+2] = 36
	binary.LittleEndian.PutUint32(hdr[len(hdr)-4:], crc32.ChecksumIEEE(hdr[:len(hdr)-4]))
	rc, err := NewReader("blocks.xz", bytes.NewReader(patched))
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second block: got %v, want ErrTooLarge", err)
	}
}

// TestXzScanRealFiles: the walk over the container accepts what xz(1)
// writes: several blocks (-T2 --block-size), every check type, stream
// padding between concatenated streams, incompressible data (uncompressed
// LZMA2 chunks), empty input.
func TestXzScanRealFiles(t *testing.T) {
	testtool.Need(t, "xz", "xz-utils")
	random := make([]byte, 600<<10)
	var x uint32 = 1
	for i := range random {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	inputs := map[string][]byte{"empty": nil, "text": sample(600 << 10), "random": random}
	variants := [][]string{
		{"xz", "-c", "-T2", "--block-size=100KiB"},
		{"xz", "-c", "--check=none"},
		{"xz", "-c", "--check=crc32", "--block-size=100000"},
		{"xz", "-c", "--check=sha256", "-3e"},
		{"xz", "-c"},
	}
	if limittest.Race {
		variants = variants[:1]
	}
	for _, args := range variants {
		for name, in := range inputs {
			comp := compressWith(t, tool{ExtXz, args}, in)
			// Two streams with stream padding between them.
			two := append(append(append([]byte{}, comp...), 0, 0, 0, 0), comp...)
			got := readAll(t)(NewReader("x.xz", bytes.NewReader(two)))
			if want := append(append([]byte{}, in...), in...); !bytes.Equal(got, want) {
				t.Errorf("%v on %s: got %d bytes, want %d", args, name, len(got), len(want))
			}
			s := newXzScan(bytes.NewReader(two))
			if _, err := io.Copy(io.Discard, s); err != nil || s.st != xzPadding {
				t.Errorf("%v on %s: the walk ended in state %d (%v), want after the last stream", args, name, s.st, err)
			}
		}
	}
}

// TestZstdWindowBound: a zstd frame asking for a 128 MiB window (zstd
// --ultra -22 on a stream of unknown size) is refused with ErrTooLarge.
func TestZstdWindowBound(t *testing.T) {
	comp := compressWith(t, tool{ExtZstd, []string{"zstd", "-c", "-q", "--ultra", "-22"}}, []byte("Package: a\n"))
	rc, err := NewReader("w.zst", bytes.NewReader(comp))
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// FuzzXzScan: whatever xz data the xz package writes (any content, check
// type, block size, one to three streams with stream padding between
// them), the walk over the container reaches the end of the last stream
// without refusing anything, and decoding gives the content back.
func FuzzXzScan(f *testing.F) {
	f.Add([]byte("Package: a\n"), uint8(0), uint16(0), uint8(1), uint8(0))
	f.Add(sample(16<<10), uint8(1), uint16(0), uint8(2), uint8(3))
	f.Add([]byte{}, uint8(2), uint16(1), uint8(3), uint8(1))
	f.Fuzz(runXzScanCase)
}

func runXzScanCase(t *testing.T, data []byte, check uint8, block uint16, streams uint8, pad uint8) {
	{
		if len(data) > 16<<10 {
			data = data[:16<<10] // each block costs the writer some MiB of setup
		}
		cfg := xz.WriterConfig{
			CheckSum:   []byte{xz.None, xz.CRC32, xz.CRC64, xz.SHA256}[check%4],
			NoCheckSum: check%4 == 0,
			BlockSize:  int64(block)*16 + 1024,
			DictCap:    1 << 16,
		}
		var all, want []byte
		for i := range int(streams%3) + 1 {
			if i > 0 {
				all = append(all, make([]byte, 4*int(pad%4))...)
			}
			var buf bytes.Buffer
			w, err := cfg.NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			all = append(all, buf.Bytes()...)
			want = append(want, data...)
		}
		s := newXzScan(bytes.NewReader(all))
		if _, err := io.Copy(io.Discard, s); err != nil || s.st != xzPadding {
			t.Fatalf("walk ended in state %d: %v", s.st, err)
		}
		rc, err := NewReader("f.xz", bytes.NewReader(all))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes (%v), want %d", len(got), err, len(want))
		}
	}
}
