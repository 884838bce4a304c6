package apt

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Release is the parsed content of a Release file (or of the signed part of
// an InRelease file).
type Release struct {
	Origin, Label, Suite, Codename, Version string
	// Date is when the Release was generated; ValidUntil, when set, is when
	// apt stops accepting it. Zero when the field is absent.
	Date, ValidUntil time.Time
	// AcquireByHash is set when the repository serves indexes under
	// by-hash/SHA256/<hex> as well.
	AcquireByHash bool
	Architectures []string
	Components    []string
	// Files maps each file the SHA256 field lists, by its path relative to
	// the directory holding the Release (dists/<suite>/), to its digest and
	// size.
	Files map[string]FileSum
	// Signer names the key that signed the Release: its fingerprint in
	// upper-case hex, a space, and its primary user ID. Empty when the
	// Release was parsed without verification (ParseRelease).
	Signer string
	// Signers are the upper-case hex fingerprints of the primary keys of
	// every trusted signature that verified (archives sign with two or three
	// keys). Empty for ParseRelease.
	Signers []string

	// index lists the SHA256 entries sorted by digest, then path, for
	// Lookup and ByHash; Files' digests point into it. Built by
	// ParseRelease; nil for a Release built by hand, where lookups fall
	// back to a scan of Files.
	index []relEntry
}

// relEntry is one SHA256 entry of a Release; path is a substring of the
// text parsed, not a copy.
type relEntry struct {
	sum  [32]byte
	size int64
	path string
	line int
}

// FileSum is what a Release promises about one file.
type FileSum struct {
	SHA256 []byte
	Size   int64
}

// Bounds of a Release. Debian's largest InRelease (sid: every
// architecture, Contents, dep11 and i18n files) is a few hundred KiB
// listing about 10,000 files, Ubuntu's about as large. Whoever can get a
// Release signed (a mirror signing its own, a stolen or test key in the
// keyring) must not be able to make a node hold and index an unbounded one:
// one of 32 MB and 330,000 entries took a node 85 s and 514 MB.
const (
	// MaxReleaseSize bounds an InRelease or Release file, ten times the
	// largest real one; VerifyInRelease and VerifyRelease refuse a bigger
	// one before any signature work. Verifying holds the input, the signed
	// text and the dash-unescaped text, which go-crypto's clearsign builds
	// by appending: a file of MaxReleaseSize peaks at about 40 MiB of heap.
	MaxReleaseSize = 4 << 20
	// MaxReleaseEntries bounds the SHA256 entries of a Release, five times
	// Debian's largest; ParseRelease keeps about 150 bytes per entry
	// besides the text.
	MaxReleaseEntries = 50_000
	// maxReleaseFields bounds the distinct fields of a Release (real ones
	// have about 15), maxListFields the words of Architectures and
	// Components (Debian lists about 10 architectures).
	maxReleaseFields = 1024
	maxListFields    = 1024
	// MaxSignatureSize bounds a detached signature (Release.gpg) or the
	// armored signature of an InRelease: one signature packet takes about
	// 1 KiB armored, and at most 16 packets are checked.
	MaxSignatureSize = 64 << 10
)

// ParseRelease parses the deb822 text of a Release file. It requires the
// SHA256 field (apt has not trusted MD5Sum or SHA1 alone for years); other
// fields are optional. It does not verify anything: use VerifyInRelease or
// VerifyRelease for data from the network.
//
// It makes one pass over one copy of the text and sorts the entries once
// (no step is quadratic), with a few allocations in all rather than per
// entry. A file over MaxReleaseSize, with more than
// MaxReleaseEntries SHA256 entries, more than 1024 distinct fields or 1024
// architectures or components is refused with an error wrapping
// repoindex.ErrTooLarge.
func ParseRelease(plain []byte) (*Release, error) {
	if len(plain) > MaxReleaseSize {
		return nil, fmt.Errorf("release: %w: %d bytes, more than the %d accepted (real ones are a few hundred KiB)", repoindex.ErrTooLarge, len(plain), MaxReleaseSize)
	}
	p := releaseParser{
		rel:  &Release{},
		text: string(plain), // paths are substrings of this one copy
	}
	if err := p.parse(); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := p.rel.buildFiles(); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return p.rel, nil
}

// buildFiles sorts the entries into the hash index and fills Files, whose
// digests point into it, in one allocation each.
func (rel *Release) buildFiles() error {
	slices.SortFunc(rel.index, func(a, b relEntry) int {
		if c := bytes.Compare(a.sum[:], b.sum[:]); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	rel.Files = make(map[string]FileSum, len(rel.index))
	for i := range rel.index {
		e := &rel.index[i]
		if old, dup := rel.Files[e.path]; dup {
			if !bytes.Equal(old.SHA256, e.sum[:]) || old.Size != e.size {
				return fmt.Errorf("line %d: SHA256: %s listed twice with different digests or sizes", e.line, e.path)
			}
			continue
		}
		rel.Files[e.path] = FileSum{SHA256: e.sum[:32:32], Size: e.size}
	}
	return nil
}

// first returns the position of the first index entry with digest sum,
// or len(rel.index).
func (rel *Release) first(sum *[32]byte) int {
	i, _ := slices.BinarySearchFunc(rel.index, sum, func(e relEntry, s *[32]byte) int {
		if c := bytes.Compare(e.sum[:], s[:]); c != 0 {
			return c
		}
		return 0
	})
	return i
}

type releaseParser struct {
	rel  *Release
	text string
	line int // of the entry being parsed
}

func (p *releaseParser) parse() error {
	rel := p.rel
	seen := make(map[string]int) // lower-case field name → line
	var (
		current      string // lower-case name of the field being continued
		sawParagraph bool
		ended        bool // a blank line followed the paragraph
		sawSHA256    bool
	)
	rest := p.text
	for ln := 1; rest != ""; ln++ {
		p.line = ln
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		kind, name, value, err := splitLineString(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", ln, err)
		}
		switch kind {
		case lineComment:
			continue
		case lineBlank:
			if sawParagraph {
				ended = true
			}
			current = ""
			continue
		case lineContinuation:
			if current == "" {
				return fmt.Errorf("line %d: continuation line outside a field", ln)
			}
			if current == "sha256" {
				if err := p.addFile(strings.Trim(line, " \t")); err != nil {
					return fmt.Errorf("line %d: SHA256: %w", ln, err)
				}
			}
			continue
		}
		if ended {
			return fmt.Errorf("line %d: a second paragraph; a Release file has one", ln)
		}
		sawParagraph = true
		key := strings.ToLower(name)
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("line %d: field %s repeated (first on line %d)", ln, name, prev)
		}
		if len(seen) == maxReleaseFields {
			return fmt.Errorf("line %d: %w: more than %d fields", ln, repoindex.ErrTooLarge, maxReleaseFields)
		}
		seen[key] = ln
		current = key
		v := value
		switch key {
		case "origin":
			rel.Origin = v
		case "label":
			rel.Label = v
		case "suite":
			rel.Suite = v
		case "codename":
			rel.Codename = v
		case "version":
			rel.Version = v
		case "date":
			if rel.Date, err = parseDate(v); err != nil {
				return fmt.Errorf("line %d: Date: %w", ln, err)
			}
		case "valid-until":
			if rel.ValidUntil, err = parseDate(v); err != nil {
				return fmt.Errorf("line %d: Valid-Until: %w", ln, err)
			}
		case "acquire-by-hash":
			switch strings.ToLower(v) {
			case "yes":
				rel.AcquireByHash = true
			case "no":
			default:
				return fmt.Errorf("line %d: Acquire-By-Hash: want yes or no, got %q", ln, clip([]byte(value)))
			}
		case "architectures", "components":
			f, err := fieldsMax(v, maxListFields)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", ln, name, err)
			}
			if key == "architectures" {
				rel.Architectures = f
			} else {
				rel.Components = f
			}
		case "sha256":
			sawSHA256 = true
			if v != "" { // entries normally start on the next line
				if err := p.addFile(v); err != nil {
					return fmt.Errorf("line %d: SHA256: %w", ln, err)
				}
			}
		}
	}
	if !sawSHA256 {
		return fmt.Errorf("no SHA256 field; the repository must list SHA-256 digests (apt refuses MD5Sum/SHA1-only Release files)")
	}
	return nil
}

// addFile parses one "<sha256> <size> <path>" entry, a substring of
// p.text, and indexes it.
func (p *releaseParser) addFile(entry string) error {
	f, ok := fields3(entry)
	if !ok {
		return fmt.Errorf("want \"<sha256> <size> <path>\", got %q", clip([]byte(entry)))
	}
	var sum [32]byte
	if err := parseHex32(&sum, []byte(f[0])); err != nil {
		return err
	}
	size, err := parseSize([]byte(f[1]))
	if err != nil {
		return err
	}
	path, err := cleanRelPath(f[2])
	if err != nil {
		return err
	}
	if len(p.rel.index) == MaxReleaseEntries {
		return fmt.Errorf("%w: more than %d files listed (Debian's largest Release lists about 10,000)", repoindex.ErrTooLarge, MaxReleaseEntries)
	}
	p.rel.index = append(p.rel.index, relEntry{sum: sum, size: size, path: path, line: p.line})
	return nil
}

// splitLineString is splitLine for a line held in a string, so that the
// values it returns are substrings, not copies.
func splitLineString(line string) (kind lineKind, name, value string, err error) {
	if strings.Trim(line, " \t") == "" {
		return lineBlank, "", "", nil
	}
	switch line[0] {
	case ' ', '\t':
		return lineContinuation, "", strings.Trim(line, " \t"), nil
	case '#':
		return lineComment, "", "", nil
	case '-':
		return 0, "", "", fmt.Errorf("unexpected line %q (is the file still clearsigned?)", clip([]byte(line)))
	}
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return 0, "", "", fmt.Errorf("expected \"Field: value\", got %q", clip([]byte(line)))
	}
	name = line[:i]
	if strings.ContainsAny(name, " \t") {
		return 0, "", "", fmt.Errorf("field name %q contains a blank", clip([]byte(name)))
	}
	return lineField, name, strings.Trim(line[i+1:], " \t"), nil
}

// dirOf is path.Dir for a cleaned relative path, without allocating.
func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// fields3 splits s into exactly three blank-separated fields without
// allocating; ok is false for any other count.
func fields3(s string) (f [3]string, ok bool) {
	for i := range 3 {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return f, false
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		f[i], s = s[:end], s[end:]
	}
	return f, strings.TrimLeft(s, " \t") == ""
}

// fieldsMax is strings.Fields for at most max fields.
func fieldsMax(s string, max int) ([]string, error) {
	var out []string
	for w := range strings.FieldsSeq(s) {
		if len(out) == max {
			return nil, fmt.Errorf("%w: more than %d words", repoindex.ErrTooLarge, max)
		}
		out = append(out, w)
	}
	return out, nil
}

// Lookup returns what the Release promises for p, a path relative to
// dists/<suite>/. A by-hash path, "<dir>/by-hash/SHA256/<hex>", resolves to
// the file in <dir> with that digest, as apt's Acquire-By-Hash does.
func (rel *Release) Lookup(p string) (FileSum, bool) {
	if fs, ok := rel.Files[p]; ok {
		return fs, true
	}
	dir, h, ok := splitByHash(p)
	if !ok {
		return FileSum{}, false
	}
	if rel.index != nil {
		var sum [32]byte
		if parseHex32(&sum, []byte(h)) != nil {
			return FileSum{}, false
		}
		for i := rel.first(&sum); i < len(rel.index) && rel.index[i].sum == sum; i++ {
			if dirOf(rel.index[i].path) == dir {
				return rel.Files[rel.index[i].path], true
			}
		}
		return FileSum{}, false
	}
	for q, fs := range rel.Files {
		if path.Dir(q) == dir && hex.EncodeToString(fs.SHA256) == h {
			return fs, true
		}
	}
	return FileSum{}, false
}

// ByHash returns a file the Release lists with the SHA-256 given in hex
// (either case). Several files may share a digest (empty indexes of several
// architectures do); ByHash returns the first path in sorted order.
func (rel *Release) ByHash(hexSum string) (string, FileSum, bool) {
	h := strings.ToLower(hexSum)
	if rel.index != nil {
		var sum [32]byte
		if parseHex32(&sum, []byte(h)) != nil {
			return "", FileSum{}, false
		}
		i := rel.first(&sum)
		if i == len(rel.index) || rel.index[i].sum != sum {
			return "", FileSum{}, false
		}
		p := rel.index[i].path
		return p, rel.Files[p], true
	}
	var best string
	for p, fs := range rel.Files {
		if hex.EncodeToString(fs.SHA256) == h && (best == "" || p < best) {
			best = p
		}
	}
	if best == "" {
		return "", FileSum{}, false
	}
	return best, rel.Files[best], true
}

// splitByHash splits "<dir>/by-hash/SHA256/<hex>" into dir and the
// lower-case hex digest.
func splitByHash(p string) (dir, h string, ok bool) {
	const mid = "/by-hash/SHA256/"
	i := strings.LastIndex(p, mid)
	if i <= 0 {
		return "", "", false
	}
	h = p[i+len(mid):]
	if len(h) != 64 {
		return "", "", false
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", "", false
	}
	return p[:i], strings.ToLower(h), true
}

// parseDate parses a Release date as apt writes it, "Sat, 09 Nov 2024
// 10:29:12 UTC", also with a numeric zone ("+0000"), a one-digit or
// space-padded day, or no weekday. Named zones other than UTC and GMT are
// refused: Go cannot know their offset.
func parseDate(s string) (time.Time, error) {
	f := strings.Fields(s)
	if len(f) > 0 {
		switch strings.ToUpper(f[len(f)-1]) {
		case "UTC", "GMT", "UT", "Z":
			f[len(f)-1] = "+0000"
		}
	}
	norm := strings.Join(f, " ")
	for _, layout := range []string{
		"Mon, 2 Jan 2006 15:04:05 -0700",
		"2 Jan 2006 15:04:05 -0700",
		"Mon, 2 Jan 2006 15:04:05 -07:00",
	} {
		if t, err := time.Parse(layout, norm); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date like \"Sat, 09 Nov 2024 10:29:12 UTC\"", s)
}
