package apt

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"
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

	// byHash maps a lower-case hex digest to a path with that digest (the
	// first in sorted order); byDirHash maps dir + "\x00" + hex to the path
	// in that directory. Built by ParseRelease; nil for a Release built
	// by hand, where lookups fall back to a scan of Files.
	byHash    map[string]string
	byDirHash map[string]string
}

// FileSum is what a Release promises about one file.
type FileSum struct {
	SHA256 []byte
	Size   int64
}

// ParseRelease parses the deb822 text of a Release file. It requires the
// SHA256 field (apt has not trusted MD5Sum or SHA1 alone for years); other
// fields are optional. It does not verify anything: use VerifyInRelease or
// VerifyRelease for data from the network.
func ParseRelease(plain []byte) (*Release, error) {
	rel := &Release{Files: make(map[string]FileSum)}
	lr := newLineReader(bytes.NewReader(plain))
	seen := make(map[string]int) // lower-case field name → line
	var (
		current      string // lower-case name of the field being continued
		sawParagraph bool
		ended        bool // a blank line followed the paragraph
		sawSHA256    bool
	)
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		kind, name, value, err := splitLine(line)
		if err != nil {
			return nil, fmt.Errorf("release: line %d: %w", lr.n, err)
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
				return nil, fmt.Errorf("release: line %d: continuation line outside a field", lr.n)
			}
			if current == "sha256" {
				if err := rel.addFile(value); err != nil {
					return nil, fmt.Errorf("release: line %d: SHA256: %w", lr.n, err)
				}
			}
			continue
		}
		if ended {
			return nil, fmt.Errorf("release: line %d: a second paragraph; a Release file has one", lr.n)
		}
		sawParagraph = true
		key := strings.ToLower(string(name))
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("release: line %d: field %s repeated (first on line %d)", lr.n, name, prev)
		}
		seen[key] = lr.n
		current = key
		v := string(value)
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
				return nil, fmt.Errorf("release: line %d: Date: %w", lr.n, err)
			}
		case "valid-until":
			if rel.ValidUntil, err = parseDate(v); err != nil {
				return nil, fmt.Errorf("release: line %d: Valid-Until: %w", lr.n, err)
			}
		case "acquire-by-hash":
			switch strings.ToLower(v) {
			case "yes":
				rel.AcquireByHash = true
			case "no":
			default:
				return nil, fmt.Errorf("release: line %d: Acquire-By-Hash: want yes or no, got %q", lr.n, v)
			}
		case "architectures":
			rel.Architectures = strings.Fields(v)
		case "components":
			rel.Components = strings.Fields(v)
		case "sha256":
			sawSHA256 = true
			if v != "" { // entries normally start on the next line
				if err := rel.addFile(value); err != nil {
					return nil, fmt.Errorf("release: line %d: SHA256: %w", lr.n, err)
				}
			}
		}
	}
	if !sawSHA256 {
		return nil, fmt.Errorf("release: no SHA256 field; the repository must list SHA-256 digests (apt refuses MD5Sum/SHA1-only Release files)")
	}
	rel.buildHashIndex()
	return rel, nil
}

// addFile parses one "<sha256> <size> <path>" entry.
func (rel *Release) addFile(entry []byte) error {
	f := bytes.Fields(entry)
	if len(f) != 3 {
		return fmt.Errorf("want \"<sha256> <size> <path>\", got %q", clip(entry))
	}
	var sum [32]byte
	if err := parseHex32(&sum, f[0]); err != nil {
		return err
	}
	size, err := parseSize(f[1])
	if err != nil {
		return err
	}
	p, err := cleanRelPath(string(f[2]))
	if err != nil {
		return err
	}
	if old, dup := rel.Files[p]; dup {
		if !bytes.Equal(old.SHA256, sum[:]) || old.Size != size {
			return fmt.Errorf("%s listed twice with different digests or sizes", p)
		}
		return nil
	}
	rel.Files[p] = FileSum{SHA256: sum[:], Size: size}
	return nil
}

func (rel *Release) buildHashIndex() {
	paths := make([]string, 0, len(rel.Files))
	for p := range rel.Files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	rel.byHash = make(map[string]string, len(paths))
	rel.byDirHash = make(map[string]string, len(paths))
	for _, p := range paths {
		h := hex.EncodeToString(rel.Files[p].SHA256)
		if _, ok := rel.byHash[h]; !ok {
			rel.byHash[h] = p
		}
		k := path.Dir(p) + "\x00" + h
		if _, ok := rel.byDirHash[k]; !ok {
			rel.byDirHash[k] = p
		}
	}
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
	if rel.byDirHash != nil {
		q, ok := rel.byDirHash[dir+"\x00"+h]
		if !ok {
			return FileSum{}, false
		}
		return rel.Files[q], true
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
	if rel.byHash != nil {
		p, ok := rel.byHash[h]
		if !ok {
			return "", FileSum{}, false
		}
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
