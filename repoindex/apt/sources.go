package apt

import (
	"fmt"
	"io"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// SourceFile is one file of a source package, from the Checksums-Sha256
// field of a Sources index.
type SourceFile struct {
	Package string // the stanza's Package field
	Name    string // a bare file name, without directory
	Size    int64
	SHA256  []byte // 32 bytes
}

// ParseSources reads a Sources index (uncompressed) from r and calls fn once
// for each file of each stanza, in order, with the stanza's Directory
// (relative to the repository root, cleaned) and the file. It stops at the
// first error of fn, which it returns unchanged, or at the first malformed
// stanza; fn is called for a stanza's files only once the whole stanza has
// been checked.
//
// Each stanza must have Package, Directory and Checksums-Sha256 fields; a
// Directory that is absolute or has a ".." segment, or a file name with a
// "/", is an error. f.SHA256 is only valid during the call: copy it to keep
// it. Memory does not grow with the size of the index.
func ParseSources(r io.Reader, fn func(dir string, f SourceFile) error) error {
	lr := newLineReader(r)
	var (
		st      = stanzaFields{required: sourcesRequired}
		start   int
		pkg     string
		dir     string
		entries []sourceEntry
		inSums  bool // continuation lines belong to Checksums-Sha256
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if err := st.complete(); err != nil {
			return fmt.Errorf("Sources: stanza at line %d%s: %w", start, pkgLabel(pkg), err)
		}
		if len(entries) == 0 {
			return fmt.Errorf("Sources: stanza at line %d%s: Checksums-Sha256 lists no file", start, pkgLabel(pkg))
		}
		for i := range entries {
			e := &entries[i]
			if err := fn(dir, SourceFile{Package: pkg, Name: e.name, Size: e.size, SHA256: e.sum[:]}); err != nil {
				return err
			}
		}
		st = stanzaFields{required: sourcesRequired}
		start, pkg, dir, entries, inSums = 0, "", "", entries[:0], false
		return nil
	}
	for {
		line, err := lr.next()
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("Sources: %w", err)
		}
		kind, name, value, err := splitLine(line)
		if err != nil {
			return fmt.Errorf("Sources: line %d: %w", lr.n, err)
		}
		switch kind {
		case lineBlank:
			if err := flush(); err != nil {
				return err
			}
			continue
		case lineComment:
			continue
		case lineContinuation:
			if start == 0 {
				return fmt.Errorf("Sources: line %d: continuation line outside a stanza", lr.n)
			}
			if inSums {
				if entries, err = appendSourceEntry(entries, value); err != nil {
					return fmt.Errorf("Sources: line %d: Checksums-Sha256: %w", lr.n, err)
				}
			}
			continue
		}
		if start == 0 {
			start = lr.n
		}
		inSums = false
		var f field
		switch {
		case fieldIs(name, "Package"):
			f = fieldPackage
		case fieldIs(name, "Directory"):
			f = fieldDirectory
		case fieldIs(name, "Checksums-Sha256"):
			f = fieldChecksums
		default:
			continue
		}
		if err := st.set(f, lr.n); err != nil {
			return fmt.Errorf("Sources: stanza at line %d: %w", start, err)
		}
		switch f {
		case fieldPackage:
			if len(value) == 0 {
				return fmt.Errorf("Sources: line %d: empty Package field", lr.n)
			}
			pkg = string(value)
		case fieldDirectory:
			if dir, err = cleanRelPath(string(value)); err != nil {
				return fmt.Errorf("Sources: line %d: Directory: %w", lr.n, err)
			}
		case fieldChecksums:
			inSums = true
			if len(value) != 0 { // entries normally start on the next line
				if entries, err = appendSourceEntry(entries, value); err != nil {
					return fmt.Errorf("Sources: line %d: Checksums-Sha256: %w", lr.n, err)
				}
			}
		}
	}
}

// sourceEntry is one parsed Checksums-Sha256 line.
type sourceEntry struct {
	sum  [32]byte
	size int64
	name string
}

// Bounds of a Sources stanza, which is held whole until it has been
// checked. The most files a real source package has is some hundred (many
// component tarballs and their signatures); a file name is at most 255
// bytes on every file system a mirror runs on.
const (
	maxSourceFiles    = 10_000
	maxSourceFileName = 255
)

// appendSourceEntry parses "<sha256> <size> <name>" onto entries.
func appendSourceEntry(entries []sourceEntry, value []byte) ([]sourceEntry, error) {
	f, ok := fields3(string(value))
	if !ok {
		return entries, fmt.Errorf("want \"<sha256> <size> <name>\", got %q", clip(value))
	}
	if len(entries) == maxSourceFiles {
		return entries, fmt.Errorf("%w: more than %d files in one stanza", repoindex.ErrTooLarge, maxSourceFiles)
	}
	if len(f[2]) > maxSourceFileName {
		return entries, fmt.Errorf("%w: file name of %d bytes, more than %d", repoindex.ErrTooLarge, len(f[2]), maxSourceFileName)
	}
	var e sourceEntry
	if err := parseHex32(&e.sum, []byte(f[0])); err != nil {
		return entries, err
	}
	var err error
	if e.size, err = parseSize([]byte(f[1])); err != nil {
		return entries, err
	}
	e.name = strings.Clone(f[2]) // not a substring: the line may be long
	if strings.Contains(e.name, "/") || e.name == "." || e.name == ".." {
		return entries, fmt.Errorf("file name %q is not a bare file name", clip([]byte(f[2])))
	}
	if _, err := cleanRelPath(e.name); err != nil {
		return entries, err
	}
	return append(entries, e), nil
}

var sourcesRequired = []field{fieldPackage, fieldDirectory, fieldChecksums}
