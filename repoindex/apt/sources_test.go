package apt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestParseSourcesGolden(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/Sources")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	err = ParseSources(f, func(dir string, sf SourceFile) error {
		fmt.Fprintf(&out, "%s %s/%s %d %s\n", sf.Package, dir, sf.Name, sf.Size, hex.EncodeToString(sf.SHA256))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "Sources.golden", out.Bytes())
}

func TestParseSourcesErrors(t *testing.T) {
	t.Parallel()
	sums := "Checksums-Sha256:\n " + testSum + " 10 a.dsc\n"
	tests := []struct {
		name, in, want string
	}{
		{"no-directory", "Package: a\n" + sums, "stanza at line 1 (package a): no Directory field"},
		{"no-checksums", "Package: a\nDirectory: pool/a\nFiles:\n d41d8cd98f00b204e9800998ecf8427e 10 a.dsc\n", "no Checksums-Sha256 field"},
		{"no-package", "Directory: pool/a\n" + sums, "no Package field"},
		{"empty-checksums", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n", "lists no file"},
		{"dotdot-directory", "Package: a\nDirectory: pool/../../etc\n" + sums, "line 2: Directory: unsafe path"},
		{"absolute-directory", "Package: a\nDirectory: /etc\n" + sums, "absolute"},
		{"slash-in-name", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " 10 ../../etc/passwd\n", "line 4"},
		{"dotdot-name", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " 10 ..\n", "not a bare file name"},
		{"bad-entry", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " 10\n", "line 4: Checksums-Sha256"},
		{"bad-sha", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n xyz 10 a.dsc\n", "line 4"},
		{"bad-size", "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " ten a.dsc\n", "line 4"},
		{"repeated-directory", "Package: a\nDirectory: pool/a\nDirectory: pool/b\n" + sums, "Directory repeated on line 3"},
		{"leading-continuation", " x\n", "line 1: continuation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			err := ParseSources(strings.NewReader(tc.in), func(string, SourceFile) error { calls++; return nil })
			if err == nil {
				t.Fatalf("no error after %d calls", calls)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if calls != 0 {
				t.Errorf("fn called %d times for a bad stanza", calls)
			}
		})
	}
}

func TestParseSourcesCallbackError(t *testing.T) {
	t.Parallel()
	in := "Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " 1 a.dsc\n " + testSum + " 2 a.tar.xz\n"
	stop := errors.New("stop")
	n := 0
	err := ParseSources(strings.NewReader(in), func(string, SourceFile) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("err = %v after %d calls", err, n)
	}
}

func TestParseSourcesFirstEntryOnFieldLine(t *testing.T) {
	t.Parallel()
	in := "Package: a\nChecksums-Sha256: " + testSum + " 1 a.dsc\n " + testSum + " 2 a.tar.xz\nDirectory: pool/a\n"
	var names []string
	err := ParseSources(strings.NewReader(in), func(dir string, f SourceFile) error {
		names = append(names, dir+"/"+f.Name)
		return nil
	})
	if err != nil || strings.Join(names, " ") != "pool/a/a.dsc pool/a/a.tar.xz" {
		t.Errorf("got %v, %v", names, err)
	}
}
