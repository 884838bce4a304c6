package rpmmd_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmmd"
)

// primaryBudget is the heap growth a primary.xml bomb may cause: one token
// (1 MiB, in the decoder's buffer), the decompressor's window and buffers.
const primaryBudget = 32 << 20

// TestParsePrimaryBombs is the regression test of issue 11's primary.xml
// bomb: small compressed files whose primary.xml is one huge text node (a
// 4.7 MB gzip took a node to 3.18 GB), attribute, name, comment, deep
// nesting or attribute flood must fail with repoindex.ErrTooLarge while the
// heap grows by less than primaryBudget. Before the bounds, each of them
// grew the heap without limit (the test's reader stops it at the budget).
func TestParsePrimaryBombs(t *testing.T) {
	type bomb struct {
		name, ext, prefix, pattern string
		size                       int64
	}
	bombs := []bomb{
		{"text node", ".gz", "<metadata><package><name>", "a", 256 << 20},
		{"text between packages", ".gz", "<metadata>", " ", 256 << 20},
		{"attribute value", ".gz", `<metadata><package><location href="`, "a", 256 << 20},
		{"element name", ".gz", "<metadata><", "a", 256 << 20},
		{"comment", ".gz", "<metadata><!--", "a", 256 << 20},
		{"CDATA", ".gz", "<metadata><package><name><![CDATA[", "<>", 256 << 20},
		{"nesting", ".gz", "<metadata>", "<a>", 256 << 20},
		{"nesting with namespaces", ".gz", "<metadata>", `<a xmlns:b="c">`, 256 << 20},
		{"attributes", ".gz", "<metadata><package ", `a="" `, 256 << 20},
		{"namespace declarations", ".gz", "<metadata ", `xmlns:a="b" `, 256 << 20},
		{"field split by comments", ".gz", "<metadata><package><name>", "a<!---->", 256 << 20},
		{"package of small elements", ".gz", "<metadata><package>", "<x/>", 256 << 20},
	}
	for _, ext := range limittest.Formats {
		size := int64(256 << 20)
		if ext == ".lzma" {
			size = 64 << 20 // no concatenation: the bomb is compressed whole
		}
		bombs = append(bombs, bomb{"text node " + ext, ext, "<metadata><package><name>", "a", size})
	}
	for _, b := range bombs {
		t.Run(b.name, func(t *testing.T) {
			if limittest.Race && b.name == "package of small elements" {
				t.Skip("16 MiB of tokens take minutes under the race detector")
			}
			data := limittest.Bomb(t, b.ext, []byte(`<?xml version="1.0"?>`+"\n"+b.prefix), []byte(b.pattern), b.size, nil)
			rc, err := decompress.SniffLimit(bytes.NewReader(data), 4<<30) // the proxy's bound
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			m := limittest.Start(primaryBudget)
			err = rpmmd.ParsePrimary(m.Reader(rc), func(p rpmmd.Package) error { return nil })
			m.Check(t, b.name)
			if !errors.Is(err, repoindex.ErrTooLarge) {
				t.Fatalf("ParsePrimary of a %d-byte %s bomb: %v, want an error wrapping repoindex.ErrTooLarge", len(data), b.ext, err)
			}
			if !strings.HasPrefix(err.Error(), "rpmmd: primary.xml") || !strings.Contains(err.Error(), "exhaust memory") {
				t.Errorf("error does not say which file and what to do: %v", err)
			}
			t.Logf("%d-byte %s: %v", len(data), b.ext, err)
		})
	}
}

// TestParsePrimaryLimitsNotHit: a package near the real sizes parses.
func TestParsePrimaryLimitsNotHit(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm">`)
	b.WriteString(`<package type="rpm"><name>big</name><arch>x86_64</arch><version epoch="0" ver="1" rel="1"/>`)
	b.WriteString(`<checksum type="sha256">` + strings.Repeat("ab", 32) + `</checksum><size package="5"/><location href="big.rpm"/>`)
	b.WriteString(`<description>` + strings.Repeat("long text ", 10_000) + `</description><format><rpm:provides>`)
	for i := range 20_000 { // ~1.4 MB of capabilities
		b.WriteString(`<rpm:entry name="kmod(x` + strings.Repeat("y", i%40) + `.ko)"/>`)
	}
	b.WriteString(`</rpm:provides></format></package></metadata>`)
	n := 0
	if err := rpmmd.ParsePrimary(strings.NewReader(b.String()), func(p rpmmd.Package) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ParsePrimary: %d packages, %v", n, err)
	}
}

func TestParsePrimaryAmbiguous(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"name twice", "<name>foo</name>", "<name>foo</name><name>bar</name>"},
		{"location twice", `<location href="foo-1.0-1.mga9.noarch.rpm"/>`, `<location href="foo-1.0-1.mga9.noarch.rpm"/><location href="x.rpm"/>`},
		{"href twice", `<location href="foo-1.0-1.mga9.noarch.rpm"/>`, `<location href="foo-1.0-1.mga9.noarch.rpm" href="x.rpm"/>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(samplePrimary, tc.from, tc.to, 1)
			err := rpmmd.ParsePrimary(strings.NewReader(in), func(rpmmd.Package) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "twice") {
				t.Fatalf("ParsePrimary: %v, want an error about a field given twice", err)
			}
		})
	}
}

// TestParseRepomdBounds: repomd.xml is read whole (at most MaxRepomd), but
// what it expands to is bounded too.
func TestParseRepomdBounds(t *testing.T) {
	fill := func(prefix, pattern string) []byte {
		b := []byte(prefix)
		for len(b)+len(pattern) <= rpmmd.MaxRepomd {
			b = append(b, pattern...)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"data entries", fill("<repomd>", `<data type="x"/>`)},
		{"nesting", fill("<repomd>", "<a>")},
		{"attributes", fill("<repomd ", `a="" `)},
		{"too large", append(fill("<repomd>", " "), "     </repomd>"...)},
		{"text", fill("<repomd><revision>", "1")},
	} {
		if len(tc.data) > rpmmd.MaxRepomd-10 && tc.name != "too large" {
			tc.data = tc.data[:rpmmd.MaxRepomd-10] // bounded by something else than the file size
		}
		t.Run(tc.name, func(t *testing.T) {
			m := limittest.Start(16 << 20)
			_, err := rpmmd.ParseRepomd(bytes.NewReader(tc.data))
			m.Check(t, tc.name)
			if !errors.Is(err, repoindex.ErrTooLarge) || !strings.HasPrefix(err.Error(), "rpmmd: ") {
				t.Fatalf("ParseRepomd: %v, want an error wrapping repoindex.ErrTooLarge", err)
			}
		})
	}
	exact := []byte("<repomd>")
	for len(exact)+5+len("</repomd>") <= rpmmd.MaxRepomd {
		exact = append(exact, "<x/>\n"...)
	}
	exact = append(exact, bytes.Repeat([]byte(" "), rpmmd.MaxRepomd-len(exact)-len("</repomd>"))...)
	if _, err := rpmmd.ParseRepomd(bytes.NewReader(append(exact, "</repomd>"...))); err != nil {
		t.Errorf("ParseRepomd of exactly MaxRepomd bytes: %v", err)
	}
	_, err := rpmmd.VerifyRepomd(make([]byte, rpmmd.MaxRepomd+1), []byte("sig"), openpgp.EntityList{})
	if !errors.Is(err, repoindex.ErrTooLarge) {
		t.Errorf("VerifyRepomd of an oversized repomd.xml: %v", err)
	}
}
