package decompress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"hash/crc32"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

// sample returns a Packages-like text of roughly n bytes.
func sample(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "Package: pkg%d\nVersion: 1.%d-1\nArchitecture: amd64\n"+
			"Filename: pool/main/p/pkg%d/pkg%d_1.%d-1_amd64.deb\nSize: %d\n"+
			"SHA256: %064x\nDescription: package number %d\n .\n more text\n\n",
			i, i, i, i, i, 1000+i, i*7919, i)
	}
	return b.Bytes()
}

// tool describes a real compressor binary and the extension it writes.
type tool struct {
	ext  string
	argv []string // reads stdin, writes stdout
}

// debianPackage names the Debian package of each compressor.
var debianPackage = map[string]string{"gzip": "gzip", "xz": "xz-utils", "bzip2": "bzip2", "zstd": "zstd", "lz4": "lz4"}

var tools = []tool{
	{ExtGzip, []string{"gzip", "-c", "-n"}},
	{ExtXz, []string{"xz", "-c"}},
	{ExtBzip2, []string{"bzip2", "-c"}},
	{ExtZstd, []string{"zstd", "-c", "-q"}},
	{ExtLz4, []string{"lz4", "-c", "-q"}},
	{ExtLzma, []string{"xz", "--format=lzma", "-c"}},
}

// compressWith runs the tool over data, skipping the test when the binary is
// missing (CI installs gzip, xz-utils, bzip2, zstd and lz4).
func compressWith(t testing.TB, tl tool, data []byte) []byte {
	t.Helper()
	path := testtool.Need(t, tl.argv[0], debianPackage[tl.argv[0]])
	cmd := exec.Command(path, tl.argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(tl.argv, " "), err, stderr.String())
	}
	return out.Bytes()
}

// readAll returns a function that reads a reader returned with its error
// to the end, failing t on any error: readAll(t)(NewReader(...)).
func readAll(t *testing.T) func(io.ReadCloser, error) []byte {
	t.Helper()
	return func(rc io.ReadCloser, err error) []byte {
		t.Helper()
		return readAllErr(t, rc, err)
	}
}

func readAllErr(t *testing.T, rc io.ReadCloser, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	return got
}

func TestRealTools(t *testing.T) {
	t.Parallel()
	inputs := map[string][]byte{"empty": nil, "small": []byte("Package: a\n"), "300k": sample(300 << 10)}
	for _, tl := range tools {
		for iname, in := range inputs {
			t.Run(tl.argv[0]+tl.ext+"/"+iname, func(t *testing.T) {
				t.Parallel()
				comp := compressWith(t, tl, in)
				name := "dists/stable/main/binary-amd64/Packages" + tl.ext
				if got := readAll(t)(NewReader(name, bytes.NewReader(comp))); !bytes.Equal(got, in) {
					t.Fatalf("NewReader(%s): got %d bytes, want %d", name, len(got), len(in))
				}
				if got := Detect(comp); got != tl.ext {
					t.Errorf("Detect: got %q, want %q", got, tl.ext)
				}
				if got := readAll(t)(Sniff(bytes.NewReader(comp))); !bytes.Equal(got, in) {
					t.Fatalf("Sniff: got %d bytes, want %d", len(got), len(in))
				}
			})
		}
	}
}

// Concatenated streams are valid input for every format but lzma-alone
// (pbzip2, pigz -i, parallel zstd and lz4 write them).
func TestRealToolsConcatenated(t *testing.T) {
	t.Parallel()
	a, b := sample(50<<10), []byte("second part\n")
	for _, tl := range tools {
		if tl.ext == ExtLzma {
			continue
		}
		t.Run(tl.argv[0], func(t *testing.T) {
			t.Parallel()
			comp := append(compressWith(t, tl, a), compressWith(t, tl, b)...)
			got := readAll(t)(NewReader("x"+tl.ext, bytes.NewReader(comp)))
			if want := append(append([]byte{}, a...), b...); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestCorruptAndTruncated(t *testing.T) {
	t.Parallel()
	in := sample(100 << 10)
	for _, tl := range tools {
		t.Run(tl.argv[0]+tl.ext, func(t *testing.T) {
			t.Parallel()
			comp := compressWith(t, tl, in)
			cases := map[string][]byte{
				"truncated-half": comp[:len(comp)/2],
				"truncated-end":  comp[:len(comp)-1],
			}
			if tl.ext != ExtLzma { // lzma-alone has no checksum
				flipped := bytes.Clone(comp)
				flipped[len(flipped)*2/3] ^= 0x55
				cases["flipped-byte"] = flipped
			}
			for cname, bad := range cases {
				rc, err := NewReader("Packages"+tl.ext, bytes.NewReader(bad))
				if err == nil {
					var got []byte
					got, err = io.ReadAll(rc)
					if err == nil && bytes.Equal(got, in) {
						// A flipped byte in lz4's block data can hit only
						// padding-free literals yet still decode; that
						// would be a checksum bug.
						t.Errorf("%s: decoded to the original data", cname)
					}
					rc.Close()
				}
				if err == nil {
					t.Errorf("%s: no error", cname)
					continue
				}
				if !strings.Contains(err.Error(), "Packages"+tl.ext) {
					t.Errorf("%s: error does not name the file: %v", cname, err)
				}
			}
		})
	}
}

func TestGoWriters(t *testing.T) {
	t.Parallel()
	in := sample(200 << 10)
	writers := map[string]func(w io.Writer) (io.WriteCloser, error){
		ExtGzip: func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil },
		ExtZstd: func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) },
		ExtXz:   func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) },
		ExtLz4:  func(w io.Writer) (io.WriteCloser, error) { return lz4.NewWriter(w), nil },
		ExtLzma: func(w io.Writer) (io.WriteCloser, error) { return lzma.NewWriter(w) },
	}
	for ext, newW := range writers {
		t.Run(ext, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			w, err := newW(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(in); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			comp := buf.Bytes()
			if got := readAll(t)(NewReader("f"+ext, bytes.NewReader(comp))); !bytes.Equal(got, in) {
				t.Fatalf("NewReader: got %d bytes, want %d", len(got), len(in))
			}
			if got := readAll(t)(Sniff(bytes.NewReader(comp))); !bytes.Equal(got, in) {
				t.Fatalf("Sniff: got %d bytes, want %d", len(got), len(in))
			}
		})
	}
}

func TestLimit(t *testing.T) {
	t.Parallel()
	// A bomb: 64 MiB of zeros compress to about 64 KiB with gzip.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zero := make([]byte, 1<<20)
	for range 64 {
		zw.Write(zero)
	}
	zw.Close()
	small := []byte("Package: a\nVersion: 1\n")
	var smallGz bytes.Buffer
	zw = gzip.NewWriter(&smallGz)
	zw.Write(small)
	zw.Close()

	tests := []struct {
		name    string
		data    []byte
		ext     string
		max     int64
		wantErr bool
	}{
		{"bomb", bomb.Bytes(), ExtGzip, 1 << 20, true},
		{"exact", smallGz.Bytes(), ExtGzip, int64(len(small)), false},
		{"one-short", smallGz.Bytes(), ExtGzip, int64(len(small)) - 1, true},
		{"plain-over", small, "", 5, true},
		{"plain-under", small, "", 1000, false},
		{"unlimited", bomb.Bytes(), ExtGzip, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, sniff := range []bool{false, true} {
				var rc io.ReadCloser
				var err error
				if sniff {
					rc, err = SniffLimit(bytes.NewReader(tc.data), tc.max)
				} else {
					rc, err = NewReaderLimit("Packages"+tc.ext, bytes.NewReader(tc.data), tc.max)
				}
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if tc.wantErr {
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("sniff=%v: got n=%d err=%v, want ErrTooLarge", sniff, n, err)
					}
					if n != tc.max {
						t.Errorf("sniff=%v: returned %d bytes before the error, want %d", sniff, n, tc.max)
					}
					// The error is sticky.
					if _, err2 := rc.Read(make([]byte, 10)); !errors.Is(err2, ErrTooLarge) {
						t.Errorf("second read: %v", err2)
					}
				} else if err != nil {
					t.Fatalf("sniff=%v: %v", sniff, err)
				}
			}
		})
	}
}

func TestExt(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, ext, trimmed string }{
		{"main/binary-amd64/Packages.xz", ".xz", "main/binary-amd64/Packages"},
		{"Packages.gz", ".gz", "Packages"},
		{"Packages.GZ", ".gz", "Packages"},
		{"Sources.bz2", ".bz2", "Sources"},
		{"Contents-amd64.zst", ".zst", "Contents-amd64"},
		{"Packages.lz4", ".lz4", "Packages"},
		{"Packages.lzma", ".lzma", "Packages"},
		{"Packages", "", "Packages"},
		{"Release.gpg", "", "Release.gpg"},
		{".gz", "", ".gz"},
		{"file.tar.xz", ".xz", "file.tar"},
		{"", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Ext(tc.name); got != tc.ext {
				t.Errorf("Ext(%q) = %q, want %q", tc.name, got, tc.ext)
			}
			if got := TrimExt(tc.name); got != tc.trimmed {
				t.Errorf("TrimExt(%q) = %q, want %q", tc.name, got, tc.trimmed)
			}
		})
	}
}

func TestDetectPlain(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "P", "Package: foo\nVersion: 1\n", "BZh9 is not bzip2 without the block magic",
		"Origin: Debian\nLabel: Debian\n", "\x1f", "-----BEGIN PGP SIGNED MESSAGE-----\n",
	} {
		if got := Detect([]byte(in)); got != "" {
			t.Errorf("Detect(%q) = %q, want plain", in, got)
		}
		got := readAll(t)(Sniff(strings.NewReader(in)))
		if string(got) != in {
			t.Errorf("Sniff(%q) returned %q", in, got)
		}
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestCloseLeavesUnderlyingOpen(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("x"))
	zw.Close()
	for _, name := range []string{"a.gz", "a"} {
		src := &closeTracker{Reader: bytes.NewReader(buf.Bytes())}
		rc, err := NewReader(name, src)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if src.closed {
			t.Errorf("%s: Close closed the underlying reader", name)
		}
	}
}

func TestEmptyCompressedInput(t *testing.T) {
	t.Parallel()
	for _, ext := range []string{ExtGzip, ExtXz, ExtLzma, ExtBzip2, ExtZstd, ExtLz4} {
		rc, err := NewReader("Packages"+ext, bytes.NewReader(nil))
		if err == nil {
			_, err = io.ReadAll(rc)
			rc.Close()
		}
		// zstd and lz4 accept zero frames as an empty stream; the others
		// need at least a header.
		if ext == ExtZstd || ext == ExtLz4 {
			continue
		}
		if err == nil {
			t.Errorf("%s: empty input gave no error", ext)
		}
	}
}

// maxFuzzAlloc bounds what decoding any input may allocate: the largest
// window or dictionary accepted (64 MiB), buffers, and the output limit
// of the fuzz targets (1 MiB).
const maxFuzzAlloc = 96 << 20

func FuzzSniff(f *testing.F) {
	f.Add([]byte("Package: a\n"))
	for _, tl := range tools {
		if _, err := exec.LookPath(tl.argv[0]); err == nil {
			f.Add(compressWith(f, tl, []byte("Package: a\nVersion: 1\n\nPackage: b\n")))
		}
	}
	f.Add([]byte{0x5d, 0, 0, 0x80, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 20
		var n int64
		var err, openErr error
		alloc := limittest.Allocs(func() {
			var rc io.ReadCloser
			if rc, openErr = SniffLimit(bytes.NewReader(data), max); openErr != nil {
				return
			}
			defer rc.Close()
			n, err = io.Copy(io.Discard, rc)
		})
		// A decoder may allocate its window or dictionary (at most 64 MiB)
		// and its buffers; nothing may grow with what a header claims.
		if alloc > maxFuzzAlloc {
			t.Fatalf("allocated %d bytes for %d bytes of input", alloc, len(data))
		}
		if openErr != nil {
			if openErr.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if n > max {
			t.Fatalf("read %d bytes past the limit %d", n, max)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "decompress ") {
			t.Fatalf("error without context: %v", err)
		}
		if Detect(data) == "" && err == nil && n != int64(len(data)) && len(data) <= max {
			t.Fatalf("plain data: read %d of %d bytes", n, len(data))
		}
	})
}

func FuzzNewReader(f *testing.F) {
	for i, tl := range tools {
		if _, err := exec.LookPath(tl.argv[0]); err == nil {
			f.Add(uint8(i), compressWith(f, tl, []byte("Package: a\nVersion: 1\n")))
		}
	}
	f.Add(uint8(0), []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		ext := tools[int(which)%len(tools)].ext
		var err error
		alloc := limittest.Allocs(func() {
			var rc io.ReadCloser
			if rc, err = NewReaderLimit("Packages"+ext, bytes.NewReader(data), 1<<20); err != nil {
				return
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
		})
		if alloc > maxFuzzAlloc {
			t.Fatalf("allocated %d bytes for %d bytes of %s input", alloc, len(data), ext)
		}
		if err != nil && !strings.Contains(err.Error(), "Packages"+ext) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// An xz header asking for a 3 GiB dictionary is refused before the decoder
// allocates it.
func TestXzHugeDictionaryRefused(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Package: a\n"))
	w.Close()
	data := buf.Bytes()
	if got := readAll(t)(NewReader("ok.xz", bytes.NewReader(data))); string(got) != "Package: a\n" {
		t.Fatalf("unpatched stream: %q", got)
	}
	// Block header after the 12-byte stream header: size, flags, optional
	// sizes, then filter 0x21 with one property byte (the dictionary code).
	blk := data[12:]
	size := (int(blk[0]) + 1) * 4
	i := bytes.Index(blk[:size], []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", blk[:size])
	}
	patched := bytes.Clone(data)
	hdr := patched[12 : 12+size]
	hdr[i+2] = 39 // 3 GiB
	binary.LittleEndian.PutUint32(hdr[size-4:], crc32.ChecksumIEEE(hdr[:size-4]))
	_, err = NewReader("bomb.xz", bytes.NewReader(patched))
	if err == nil || !strings.Contains(err.Error(), "dictionary") || !strings.Contains(err.Error(), "bomb.xz") {
		t.Fatalf("got %v, want a dictionary-size error naming the file", err)
	}
	if !strings.Contains(err.Error(), "exceeds the 64 MiB accepted") {
		t.Errorf("refused for another reason: %v", err)
	}
	if _, err := Sniff(bytes.NewReader(patched)); err == nil {
		t.Fatal("Sniff accepted the huge dictionary")
	}
}
