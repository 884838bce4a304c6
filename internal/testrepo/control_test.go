package testrepo_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

func TestParseParagraphs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []testrepo.Paragraph
		wantErr bool
	}{
		{name: "empty", in: "", want: nil},
		{name: "one", in: "Package: a\nVersion: 1\n", want: []testrepo.Paragraph{{{"Package", "a"}, {"Version", "1"}}}},
		{name: "two with extra blank lines", in: "\n\nA: 1\n\n\n\nB: 2\n\n",
			want: []testrepo.Paragraph{{{"A", "1"}}, {{"B", "2"}}}},
		{name: "continuation", in: "Description: short\n long line\n .\n more\n",
			want: []testrepo.Paragraph{{{"Description", "short\n long line\n .\n more"}}}},
		{name: "empty first line", in: "SHA256:\n abc 1 x\n def 2 y\n",
			want: []testrepo.Paragraph{{{"SHA256", "\n abc 1 x\n def 2 y"}}}},
		{name: "comment and CRLF", in: "# c\r\nA: 1\r\n", want: []testrepo.Paragraph{{{"A", "1"}}}},
		{name: "colon in value", in: "Maintainer: a <b:c>\n", want: []testrepo.Paragraph{{{"Maintainer", "a <b:c>"}}}},
		{name: "continuation first", in: " x\n", wantErr: true},
		{name: "no colon", in: "Package a\n", wantErr: true},
		{name: "duplicate field", in: "A: 1\na: 2\n", wantErr: true},
		{name: "bad field name", in: "-A: 1\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := testrepo.ParseParagraphs(tc.in)
			if tc.wantErr {
				if !errors.Is(err, testrepo.ErrSyntax) {
					t.Fatalf("err = %v, want ErrSyntax", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseParagraphs: no panic; errors wrap ErrSyntax; what parses
// renders to text that parses back to the same paragraphs.
func FuzzParseParagraphs(f *testing.F) {
	for _, s := range []string{
		"", "Package: a\nVersion: 1\n\nPackage: b\n",
		"Description: x\n y\n .\n",
		"SHA256:\n 00 1 main/binary-amd64/Packages\n",
		" bad\n", "A:1\nA:2\n", "# only a comment\n", "A: \t\n", "A:\n\t\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := testrepo.ParseParagraphs(in)
		if err != nil {
			if !errors.Is(err, testrepo.ErrSyntax) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		var b strings.Builder
		for _, p := range ps {
			if len(p) == 0 {
				t.Fatal("empty paragraph returned")
			}
			b.WriteString(p.String())
			b.WriteString("\n")
		}
		again, err := testrepo.ParseParagraphs(b.String())
		if err != nil {
			t.Fatalf("re-parse of rendered %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(ps, again) {
			t.Fatalf("round trip changed paragraphs:\n%q\n%q", ps, again)
		}
	})
}
