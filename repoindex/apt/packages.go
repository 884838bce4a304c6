package apt

import (
	"fmt"
	"io"
)

// Package is one stanza of a Packages index: what apt needs to fetch and
// check a .deb.
type Package struct {
	Name, Version, Architecture string
	// Filename is relative to the repository root (the directory holding
	// dists/ and pool/), cleaned: never absolute, never with "..".
	Filename string
	Size     int64
	SHA256   []byte // 32 bytes
}

// ParsePackages reads a Packages index (uncompressed) from r and calls fn
// once per stanza, in order, after checking it. It stops at the first error
// of fn, which it returns unchanged, or at the first malformed stanza.
//
// Each stanza must have Package, Filename, Size and SHA256 fields (Version
// and Architecture are recorded when present); a Filename that is absolute or
// has a ".." segment is an error. Errors give the line number of the stanza.
//
// fn receives the same *Package every time, overwritten for each stanza, and
// p.SHA256 shares its memory: fn must copy p (and p.SHA256) to keep it. The
// strings themselves may be kept. ParsePackages reads r in a streaming way;
// memory does not grow with the size of the index.
func ParsePackages(r io.Reader, fn func(p *Package) error) error {
	lr := newLineReader(r)
	var (
		p        Package
		sum      [32]byte
		st       stanzaFields
		start    int // line of the stanza's first field, 0 between stanzas
		lastArch string
	)
	flush := func() error {
		if start == 0 {
			return nil
		}
		if err := st.complete(); err != nil {
			return fmt.Errorf("Packages: stanza at line %d%s: %w", start, pkgLabel(p.Name), err)
		}
		p.SHA256 = sum[:]
		err := fn(&p)
		p = Package{}
		st = stanzaFields{}
		start = 0
		return err
	}
	for {
		line, err := lr.next()
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("Packages: %w", err)
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			// Continuations (mostly Description) are skipped without
			// further parsing; a line of blanks ends the stanza.
			if len(line) == 0 || isBlank(line) {
				if err := flush(); err != nil {
					return err
				}
			} else if start == 0 {
				return fmt.Errorf("Packages: line %d: continuation line outside a stanza", lr.n)
			}
			continue
		}
		kind, name, value, err := splitLine(line)
		if err != nil {
			return fmt.Errorf("Packages: line %d: %w", lr.n, err)
		}
		if kind != lineField {
			continue // comment
		}
		if start == 0 {
			start = lr.n
		}
		var f field
		switch len(name) {
		case 4:
			f = fieldSize
			if !fieldIs(name, "Size") {
				continue
			}
		case 6:
			f = fieldSHA256
			if !fieldIs(name, "SHA256") {
				continue
			}
		case 7:
			switch {
			case fieldIs(name, "Package"):
				f = fieldPackage
			case fieldIs(name, "Version"):
				f = fieldVersion
			default:
				continue
			}
		case 8:
			f = fieldFilename
			if !fieldIs(name, "Filename") {
				continue
			}
		case 12:
			f = fieldArchitecture
			if !fieldIs(name, "Architecture") {
				continue
			}
		default:
			continue
		}
		if err := st.set(f, lr.n); err != nil {
			return fmt.Errorf("Packages: stanza at line %d: %w", start, err)
		}
		switch f {
		case fieldPackage:
			if len(value) == 0 {
				return fmt.Errorf("Packages: line %d: empty Package field", lr.n)
			}
			p.Name = string(value)
		case fieldVersion:
			p.Version = string(value)
		case fieldArchitecture:
			if lastArch != string(value) { // one string per distinct value in a row
				lastArch = string(value)
			}
			p.Architecture = lastArch
		case fieldFilename:
			if p.Filename, err = cleanRelPath(string(value)); err != nil {
				return fmt.Errorf("Packages: line %d: Filename: %w", lr.n, err)
			}
		case fieldSize:
			if p.Size, err = parseSize(value); err != nil {
				return fmt.Errorf("Packages: line %d: Size: %w", lr.n, err)
			}
		case fieldSHA256:
			if err := parseHex32(&sum, value); err != nil {
				return fmt.Errorf("Packages: line %d: %w", lr.n, err)
			}
		}
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

func pkgLabel(name string) string {
	if name == "" {
		return ""
	}
	return " (package " + name + ")"
}

// field names the fields the index parsers record.
type field uint8

const (
	fieldPackage field = iota
	fieldVersion
	fieldArchitecture
	fieldFilename
	fieldSize
	fieldSHA256
	fieldDirectory
	fieldChecksums
	numFields
)

var fieldNames = [numFields]string{"Package", "Version", "Architecture", "Filename", "Size", "SHA256", "Directory", "Checksums-Sha256"}

// stanzaFields records on which line each field of the current stanza was
// seen, to refuse repeats (two parsers could pick different values) and to
// report missing fields.
type stanzaFields struct {
	line     [numFields]int
	required []field // nil: the Packages set
}

var packagesRequired = []field{fieldPackage, fieldFilename, fieldSize, fieldSHA256}

func (s *stanzaFields) set(f field, line int) error {
	if prev := s.line[f]; prev != 0 {
		return fmt.Errorf("field %s repeated on line %d (first on line %d)", fieldNames[f], line, prev)
	}
	s.line[f] = line
	return nil
}

func (s *stanzaFields) complete() error {
	req := s.required
	if req == nil {
		req = packagesRequired
	}
	for _, f := range req {
		if s.line[f] == 0 {
			return fmt.Errorf("no %s field", fieldNames[f])
		}
	}
	return nil
}
