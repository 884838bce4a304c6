package limittest

import (
	"bytes"
	"io"
	"os/exec"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// chunk is the size of the repeated member of a bomb.
const chunk = 8 << 20

var (
	cacheMu sync.Mutex
	cache   = map[string][]byte{} // ext + NUL + pattern → one compressed chunk
)

// Bomb returns data in the format of ext (".gz", ".xz", ".zst", ".bz2",
// ".lz4" or ".lzma") that decompresses
// to prefix, then pattern repeated over size bytes (rounded up to 8 MiB,
// or to 1 MiB for lzma), then suffix.
// Except for lzma-alone, which has no concatenation, it is a series of
// members (gzip), streams (xz, bzip2) or frames (zstd, lz4), each of them
// compressed once, so a bomb of gigabytes costs a few milliseconds.
// bzip2 needs the bzip2 program; the test is skipped without it.
func Bomb(t testing.TB, ext string, prefix, pattern []byte, size int64, suffix []byte) []byte {
	t.Helper()
	if ext == ".lzma" {
		var out bytes.Buffer
		w, err := lzma.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(prefix)
		buf := fill(pattern, 1<<20)
		for n := int64(0); n < size; n += int64(len(buf)) {
			w.Write(buf)
		}
		w.Write(suffix)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	key := ext + "\x00" + string(pattern)
	cacheMu.Lock()
	c, ok := cache[key]
	cacheMu.Unlock()
	if !ok {
		c = compress(t, ext, fill(pattern, chunk))
		cacheMu.Lock()
		cache[key] = c
		cacheMu.Unlock()
	}
	var out bytes.Buffer
	out.Write(compress(t, ext, prefix))
	for n := int64(0); n < size; n += chunk {
		out.Write(c) // each chunk expands to at least 8 MiB
	}
	if len(suffix) > 0 {
		out.Write(compress(t, ext, suffix))
	}
	return out.Bytes()
}

// fill repeats pattern over at least n bytes.
func fill(pattern []byte, n int) []byte {
	return bytes.Repeat(pattern, (n+len(pattern)-1)/len(pattern))
}

func compress(t testing.TB, ext string, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	switch ext {
	case ".gz":
		w, err = gzip.NewWriterLevel(&out, gzip.BestCompression)
	case ".xz":
		w, err = xz.NewWriter(&out)
	case ".zst":
		w, err = zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	case ".lz4":
		w = lz4.NewWriter(&out)
	case ".bz2":
		p, lerr := exec.LookPath("bzip2")
		if lerr != nil {
			t.Skipf("bzip2 not installed (install the Debian package bzip2 to run this test): %v", lerr)
		}
		cmd := exec.Command(p, "-c", "-9")
		cmd.Stdin = bytes.NewReader(data)
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("bzip2: %v", err)
		}
		return out.Bytes()
	default:
		t.Fatalf("limittest: no bomb for %q", ext)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
