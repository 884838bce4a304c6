package urpmi_test

import (
	"bytes"
	"errors"
	"fmt"
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
