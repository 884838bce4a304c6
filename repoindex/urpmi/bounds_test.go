package urpmi_test

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// TestSynthesisBombs: ParseSynthesisCompressed on synthesis bombs (a line
// of hundreds of MiB in every format it sniffs) fails with
// repoindex.ErrTooLarge while the heap grows by less than 56 MiB (a line of
// 8 MiB in a doubling buffer, its garbage, the decoder).
func TestSynthesisBombs(t *testing.T) {
	for _, ext := range limittest.Formats {
		t.Run(ext, func(t *testing.T) {
			size := int64(512 << 20)
			if ext == ".lzma" {
				size = 64 << 20
			}
			data := limittest.Bomb(t, ext, []byte("@provides@"), []byte("a"), size, nil)
			m := limittest.Start(56 << 20)
			err := urpmi.ParseSynthesisCompressed(m.Reader(bytes.NewReader(data)), func(urpmi.SynthEntry) error { return nil })
			m.Check(t, ext)
			if !errors.Is(err, repoindex.ErrTooLarge) {
				t.Fatalf("%d-byte bomb: %v, want an error wrapping repoindex.ErrTooLarge", len(data), err)
			}
		})
	}
}

// TestSynthesisInfoSplit: an @info@ line of millions of fields costs the
// line, not a string per field (strings.Split made 16 bytes of heap of
// each byte of '@').
func TestSynthesisInfoSplit(t *testing.T) {
	line := []byte("@info@a-1-1.noarch@0@" + strings.Repeat("@", 7<<20) + "\n")
	m := limittest.Start(32 << 20)
	n := 0
	err := urpmi.ParseSynthesis(bytes.NewReader(line), func(urpmi.SynthEntry) error { n++; return nil })
	m.Check(t, "@info@ of 7 Mi fields")
	if err != nil || n != 1 {
		t.Fatalf("ParseSynthesis: %d entries, %v", n, err)
	}
}

// TestMediaCfgBounds: media.cfg is at most 4 MiB, but a million tiny
// sections or keys in it would take hundreds of MiB.
func TestMediaCfgBounds(t *testing.T) {
	fill := func(prefix string, line func(i int) string) []byte {
		b := []byte(prefix)
		for i := 0; ; i++ {
			l := line(i)
			if len(b)+len(l) > 4<<20 {
				return b
			}
			b = append(b, l...)
		}
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"sections", fill("", func(i int) string { return fmt.Sprintf("[m%d]\n", i) })},
		{"keys", fill("[media_info]\n", func(i int) string { return fmt.Sprintf("k%d\n", i) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := limittest.Start(8 << 20)
			_, err := urpmi.ParseMediaCfg(bytes.NewReader(tc.data))
			m.Check(t, tc.name)
			if !errors.Is(err, repoindex.ErrTooLarge) {
				t.Fatalf("ParseMediaCfg: %v, want an error wrapping repoindex.ErrTooLarge", err)
			}
		})
	}
}

// FuzzParseSynthesisCompressed: a synthesis.hdlist.cz as served (any
// compression or none) never makes ParseSynthesisCompressed panic or
// allocate past a bound (a decoder's window, a line of 8 MiB, buffers),
// and errors say they are urpmi's.
func FuzzParseSynthesisCompressed(f *testing.F) {
	for _, tl := range [][]string{{"gzip", "-c"}, {"xz", "-c"}, {"zstd", "-c", "-q"}, {"lz4", "-c", "-q"}, {"bzip2", "-c"}} {
		cmd := exec.Command(tl[0], tl[1:]...)
		cmd.Stdin = strings.NewReader("@provides@x\n@filesize@5\n@info@a-1-1.noarch@0@1@G\n")
		if out, err := cmd.Output(); err == nil {
			f.Add(out)
		}
	}
	f.Add([]byte("@info@a-1-1.noarch@0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var err error
		alloc := limittest.Allocs(func() {
			err = urpmi.ParseSynthesisCompressed(bytes.NewReader(data), func(e urpmi.SynthEntry) error {
				if e.NEVRA != e.Name+"-"+e.Version+"-"+e.Release+"."+e.Arch || e.FileSize == 0 || e.FileSize < -1 {
					t.Fatalf("entry %+v", e)
				}
				return nil
			})
		})
		if alloc > 128<<20 {
			t.Fatalf("allocated %d bytes for %d bytes of input", alloc, len(data))
		}
		if err != nil && !strings.HasPrefix(err.Error(), "urpmi: ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

// FuzzParseNEVRA: file names come from clients and mirrors; a NEVRA that
// parses has non-empty parts free of separators, which join back to it.
func FuzzParseNEVRA(f *testing.F) {
	f.Add("lib64foo-devel-1.2-4.mga9.x86_64")
	f.Add("a-1-1.noarch")
	f.Add("../a-1-1.x")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := urpmi.ParseNEVRA(s)
		if err != nil {
			return
		}
		if e.NEVRA != s || e.Name+"-"+e.Version+"-"+e.Release+"."+e.Arch != s {
			t.Fatalf("ParseNEVRA(%q) = %+v", s, e)
		}
		for _, p := range []string{e.Name, e.Version, e.Release, e.Arch} {
			if p == "" || strings.ContainsAny(p, "/@\x00 \t\r\n") || strings.Contains(e.Version+e.Release, "-") {
				t.Fatalf("ParseNEVRA(%q): part %q", s, p)
			}
		}
	})
}

// FuzzClassify: request paths come from clients; classification never
// panics, gives a known kind exactly when ok, and MediumDir agrees.
func FuzzClassify(f *testing.F) {
	f.Add("distrib/9/x86_64/media/core/release/media_info/synthesis.hdlist.cz")
	f.Add("media/media_info/media.cfg")
	f.Add("core/release/foo-1-1.mga9.x86_64.rpm")
	f.Add("media_info/20240101-120000-synthesis.hdlist.cz")
	f.Fuzz(func(t *testing.T, p string) {
		k, ok := urpmi.Classify(p)
		if ok == (k == urpmi.KindUnknown) || k.String() == "invalid" {
			t.Fatalf("Classify(%q) = %v, %v", p, k, ok)
		}
		if dir, ok := urpmi.MediumDir(p); ok && !strings.HasPrefix(path.Clean(p), path.Clean(dir)) {
			t.Fatalf("MediumDir(%q) = %q", p, dir)
		}
	})
}
