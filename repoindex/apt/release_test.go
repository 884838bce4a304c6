package apt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// releaseView is a Release in a stable, readable form for golden files.
type releaseView struct {
	Origin, Label, Suite, Codename, Version string
	Date, ValidUntil                        string
	AcquireByHash                           bool
	Architectures, Components               []string
	Files                                   []string // "sha256 size path", sorted
}

func viewRelease(r *Release) releaseView {
	v := releaseView{
		Origin: r.Origin, Label: r.Label, Suite: r.Suite, Codename: r.Codename, Version: r.Version,
		AcquireByHash: r.AcquireByHash, Architectures: r.Architectures, Components: r.Components,
	}
	if !r.Date.IsZero() {
		v.Date = r.Date.Format(time.RFC3339)
	}
	if !r.ValidUntil.IsZero() {
		v.ValidUntil = r.ValidUntil.Format(time.RFC3339)
	}
	for p, fs := range r.Files {
		v.Files = append(v.Files, hex.EncodeToString(fs.SHA256)+" "+strconv.FormatInt(fs.Size, 10)+" "+p)
	}
	sort.Strings(v.Files)
	return v
}

func TestParseReleaseGolden(t *testing.T) {
	t.Parallel()
	inputs, err := filepath.Glob("testdata/*.release")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata/*.release: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			rel, err := ParseRelease(data)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(viewRelease(rel), "", "  ")
			golden(t, filepath.Base(in)+".golden", append(out, '\n'))
		})
	}
}

func TestParseReleaseErrors(t *testing.T) {
	t.Parallel()
	const sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		name, in, want string
	}{
		{"no-sha256", "Origin: x\nMD5Sum:\n d41d8cd98f00b204e9800998ecf8427e 0 a\n", "no SHA256 field"},
		{"bad-date", "Date: yesterday\nSHA256:\n", "line 1: Date"},
		{"bad-valid-until", "Origin: x\nValid-Until: Sat, 09 Nov 2024 10:29:12 EST\nSHA256:\n", "line 2: Valid-Until"},
		{"short-hex", "SHA256:\n abcd 0 main/a\n", "line 2"},
		{"non-hex", "SHA256:\n " + strings.Repeat("z", 64) + " 0 main/a\n", "not hexadecimal"},
		{"bad-size", "SHA256:\n " + sum + " -1 main/a\n", "line 2"},
		{"two-fields", "SHA256:\n " + sum + " 0\n", "line 2"},
		{"dotdot", "SHA256:\n " + sum + " 0 main/../../etc/passwd\n", "\"..\" segment"},
		{"absolute", "SHA256:\n " + sum + " 0 /etc/passwd\n", "absolute"},
		{"conflicting-duplicate", "SHA256:\n " + sum + " 0 main/a\n " + sum + " 1 main/a\n", "listed twice"},
		{"repeated-field", "Suite: a\nSuite: b\nSHA256:\n", "line 2: field Suite repeated (first on line 1)"},
		{"repeated-field-case", "Suite: a\nsuite: b\nSHA256:\n", "repeated"},
		{"second-paragraph", "Suite: a\nSHA256:\n\nSuite: b\n", "line 4: a second paragraph"},
		{"leading-continuation", " foo\nSHA256:\n", "line 1: continuation"},
		{"armor", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSHA256:\n", "clearsigned"},
		{"no-colon", "Suite stable\nSHA256:\n", "line 1"},
		{"blank-in-name", "Su ite: stable\nSHA256:\n", "line 1"},
		{"by-hash-value", "Acquire-By-Hash: maybe\nSHA256:\n", "Acquire-By-Hash"},
		{"empty", "", "no SHA256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rel, err := ParseRelease([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; parsed %+v", rel)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseReleaseTolerates(t *testing.T) {
	t.Parallel()
	const sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		name, in string
		files    int
	}{
		{"minimal", "SHA256:\n", 0},
		{"crlf", "Suite: x\r\nSHA256:\r\n " + sum + " 0 main/a\r\n", 1},
		{"no-final-newline", "SHA256:\n " + sum + " 0 main/a", 1},
		{"tabs-and-spaces", "Suite:\tx \nSHA256:\n\t" + sum + "\t0\tmain/a\n", 1},
		{"leading-and-trailing-blank-lines", "\n\nSuite: x\nSHA256:\n " + sum + " 0 main/a\n\n\n", 1},
		{"comment", "# generated\nSHA256:\n " + sum + " 0 main/a\n", 1},
		{"same-entry-twice", "SHA256:\n " + sum + " 0 main/a\n " + sum + " 0 main/a\n", 1},
		{"dot-slash-cleaned", "SHA256:\n " + sum + " 0 ./main/a\n", 1},
		{"unknown-multiline-field", "Foo:\n bar\n baz\nSHA256:\n " + sum + " 0 main/a\nSHA512:\n x y z\n", 1},
		{"flat-repo", "Origin: flat\nSHA256:\n " + sum + " 0 Packages\n " + sum + " 0 Packages.gz\n", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rel, err := ParseRelease([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(rel.Files) != tc.files {
				t.Errorf("%d files, want %d: %v", len(rel.Files), tc.files, rel.Files)
			}
		})
	}
}

func TestParseDate(t *testing.T) {
	t.Parallel()
	want := time.Date(2024, 11, 9, 10, 29, 12, 0, time.UTC)
	for _, in := range []string{
		"Sat, 09 Nov 2024 10:29:12 UTC",
		"Sat, 09 Nov 2024 10:29:12 +0000",
		"Sat, 9 Nov 2024 10:29:12 UTC",
		"Sat,  9 Nov 2024 10:29:12 UTC",
		"Sat, 09 Nov 2024 10:29:12 GMT",
		"09 Nov 2024 10:29:12 UTC",
		"Sat, 09 Nov 2024 11:29:12 +0100",
		"Sat, 09 Nov 2024 05:29:12 -0500",
		"Sat, 09 Nov 2024 10:29:12 utc",
	} {
		got, err := parseDate(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseDate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2024-11-09T10:29:12Z", "Sat, 09 Nov 2024 10:29:12 EST", "Sat, 09 Nov 2024", "Sat, 32 Nov 2024 10:29:12 UTC"} {
		if got, err := parseDate(in); err == nil {
			t.Errorf("parseDate(%q) = %v, want an error", in, got)
		}
	}
}

func TestLookupAndByHash(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/bookworm-updates.release")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseRelease(data)
	if err != nil {
		t.Fatal(err)
	}
	// The same Release built by hand has no index: lookups must agree.
	byHand := &Release{Files: parsed.Files}
	const (
		pkgs    = "main/binary-amd64/Packages.xz"
		empty   = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
		missing = "0000000000000000000000000000000000000000000000000000000000000000"
	)
	for name, rel := range map[string]*Release{"parsed": parsed, "by-hand": byHand} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fs, ok := rel.Lookup(pkgs)
			if !ok || len(fs.SHA256) != 32 || fs.Size <= 0 {
				t.Fatalf("Lookup(%s) = %v, %v", pkgs, fs, ok)
			}
			h := hex.EncodeToString(fs.SHA256)
			if got, ok := rel.Lookup("main/binary-amd64/by-hash/SHA256/" + h); !ok || got.Size != fs.Size {
				t.Errorf("by-hash Lookup = %v, %v", got, ok)
			}
			if _, ok := rel.Lookup("main/binary-arm64/by-hash/SHA256/" + h); ok {
				t.Error("by-hash Lookup matched a file of another directory")
			}
			if _, ok := rel.Lookup("main/binary-amd64/by-hash/SHA256/" + missing); ok {
				t.Error("by-hash Lookup of an unlisted digest succeeded")
			}
			if _, ok := rel.Lookup("main/binary-amd64/Packages.bz2"); ok {
				t.Error("Lookup of an unlisted file succeeded")
			}
			p, got, ok := rel.ByHash(strings.ToUpper(h))
			if !ok || p != pkgs || got.Size != fs.Size {
				t.Errorf("ByHash = %q, %v, %v", p, got, ok)
			}
			// Many empty files share one digest: the first path in order wins.
			if p, _, ok := rel.ByHash(empty); !ok || p != "contrib/Contents-all" {
				t.Errorf("ByHash(empty) = %q, %v", p, ok)
			}
			if _, _, ok := rel.ByHash(missing); ok {
				t.Error("ByHash of an unlisted digest succeeded")
			}
		})
	}
}

func TestIsIndexPath(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	tests := []struct {
		path string
		kind IndexKind
		ok   bool
	}{
		{"main/binary-amd64/Packages", IndexPackages, true},
		{"main/binary-amd64/Packages.xz", IndexPackages, true},
		{"main/debian-installer/binary-amd64/Packages.gz", IndexPackages, true},
		{"Packages.gz", IndexPackages, true},
		{"main/source/Sources.zst", IndexSources, true},
		{"main/i18n/Translation-en.bz2", IndexTranslation, true},
		{"main/Contents-amd64.gz", IndexContents, true},
		{"main/Contents-udeb-amd64.lz4", IndexContents, true},
		{"main/binary-amd64/by-hash/SHA256/" + h, IndexByHash, true},
		{"main/binary-amd64/Release", IndexOther, true},
		{"main/i18n/Index", IndexOther, true},
		{"main/binary-amd64/Packages.diff/Index", IndexOther, true},
		{"main/binary-amd64/Packages.diff/T-2024-11-09-0812.28-F-2024-11-08-2012.49.gz", IndexOther, true},
		{"main/dep11/Components-amd64.yml.gz", IndexOther, true},
		{"InRelease", 0, false},
		{"Release", 0, false},
		{"Release.gpg", 0, false},
		{"", 0, false},
		{"/etc/passwd", 0, false},
		{"main/../../Packages", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			kind, ok := IsIndexPath(tc.path)
			if kind != tc.kind || ok != tc.ok {
				t.Errorf("IsIndexPath(%q) = %v, %v; want %v, %v", tc.path, kind, ok, tc.kind, tc.ok)
			}
		})
	}
}
