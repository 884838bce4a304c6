package rpmmd

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// Package is one <package> of primary.xml.
type Package struct {
	Name, Arch              string
	Epoch, Version, Release string
	// Location is the href relative to the repository root.
	Location string
	// ChecksumType is the checksum's type attribute as written.
	ChecksumType string
	// SHA256 is the package file's digest, nil unless ChecksumType is sha256.
	SHA256 []byte
	// Size is the package file's size (<size package="...">), -1 if absent.
	Size int64
}

// NEVRA is name-version-release.arch, as rpm names the file.
func (p *Package) NEVRA() string { return p.Name + "-" + p.Version + "-" + p.Release + "." + p.Arch }

// Expect returns what the metadata promises about the package file: its
// SHA-256 and size, keyed by digest. When keys is not nil, Check also
// requires the rpm's header signature by one of keys and a matching payload
// digest and NEVRA (rpmsig.VerifyRPM), as dnf does with gpgcheck=1. ok is
// false when the checksum is not SHA-256.
func (p *Package) Expect(keys *rpmsig.KeySet) (e repoindex.Expectation, ok bool) {
	if p.SHA256 == nil {
		return repoindex.Expectation{}, false
	}
	e = repoindex.Expectation{SHA256: p.SHA256, Size: p.Size, Key: repoindex.DigestKey(p.SHA256)}
	if keys != nil {
		nevra := p.NEVRA()
		e.Check = func(f *os.File) error {
			info, err := rpmsig.VerifyRPM(f, keys)
			if err != nil {
				return err
			}
			if info.NEVRA != nevra {
				return fmt.Errorf("rpm %s: %w: signed header names %s, primary.xml says %s", f.Name(), rpmsig.ErrMismatch, info.NEVRA, nevra)
			}
			return nil
		}
	}
	return e, true
}

type xmlPackage struct {
	Type    string `xml:"type,attr"`
	Name    string `xml:"name"`
	Arch    string `xml:"arch"`
	Version struct {
		Epoch string `xml:"epoch,attr"`
		Ver   string `xml:"ver,attr"`
		Rel   string `xml:"rel,attr"`
	} `xml:"version"`
	Checksum xmlChecksum `xml:"checksum"`
	Size     struct {
		Package string `xml:"package,attr"`
	} `xml:"size"`
	Location struct {
		Href string `xml:"href,attr"`
		Base string `xml:"base,attr"`
	} `xml:"location"`
}

// ParsePrimary reads a decompressed primary.xml and calls fn once per
// <package>, in file order. It reads one token at a time and keeps only the
// fields it returns, so memory does not grow with the file, a package or a
// token: a token longer than MaxToken, a package longer than MaxPackageSize,
// nesting deeper than 64 elements or an element with more than 64
// attributes stops parsing with an error wrapping repoindex.ErrTooLarge
// before the excess is read. A package without name, arch, version,
// release or location, with one of them given twice, a sha256 checksum that
// is not 64 hex digits, a bad size, or a location that leaves the
// repository (ErrBadLocation) stops parsing with an error naming the
// package; an error from fn is returned as is.
func ParsePrimary(r io.Reader, fn func(Package) error) error {
	x := newXMLReader(r)
	n := 0
	sawRoot := false
	for {
		tok, err := x.token()
		if err == io.EOF {
			if !sawRoot {
				return fmt.Errorf("rpmmd: primary.xml: no <metadata> element")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("rpmmd: primary.xml after %d packages: %w%s", n, err, tooLargeHint(err))
		}
		t, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if x.depth == 1 {
			if t.Name.Local != "metadata" {
				return fmt.Errorf("rpmmd: primary.xml: root element <%s>, want <metadata>", clip(t.Name.Local))
			}
			sawRoot = true
			continue
		}
		if x.depth != 2 || t.Name.Local != "package" {
			continue
		}
		n++
		x.bound(MaxPackageSize, "a <package> element")
		var xp xmlPackage
		err = readPackage(x, &xp)
		x.unbound()
		if err != nil {
			return fmt.Errorf("rpmmd: primary.xml package #%d%s: %w%s", n, nameLabel(xp.Name), err, tooLargeHint(err))
		}
		p, err := packageFrom(&xp)
		if err != nil {
			return fmt.Errorf("rpmmd: primary.xml package #%d (%s): %w", n, clip(xp.Name), err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

// readPackage reads the children of a <package> whose start tag was just
// read, up to its end tag, into xp. Only the direct text of a field's
// element counts, as encoding/xml's Unmarshal does; a field given twice is
// an error.
func readPackage(x *xmlReader, xp *xmlPackage) error {
	const depth = 2 // of <package>
	var (
		cur             *[]byte // field whose element is open, nil for others
		field           string  // its element name
		seen            = map[string]bool{}
		name, arch, sum []byte
	)
	for {
		tok, err := x.token()
		if err == io.EOF {
			return fmt.Errorf("unexpected end of file: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if x.depth != depth+1 {
				continue
			}
			cur, field = nil, t.Name.Local
			switch field {
			case "name", "arch", "version", "checksum", "size", "location":
				if seen[field] {
					return fmt.Errorf("<%s> given twice", field)
				}
				seen[field] = true
			}
			var aerr error
			get := func(local string) string {
				v, err := attr(t, local)
				if aerr == nil {
					aerr = err
				}
				return v
			}
			switch field {
			case "name":
				cur = &name
			case "arch":
				cur = &arch
			case "checksum":
				cur = &sum
				xp.Checksum.Type = get("type")
			case "version":
				xp.Version.Epoch, xp.Version.Ver, xp.Version.Rel = get("epoch"), get("ver"), get("rel")
			case "size":
				xp.Size.Package = get("package")
			case "location":
				xp.Location.Href, xp.Location.Base = get("href"), get("base")
			}
			if aerr != nil {
				return aerr
			}
		case xml.CharData:
			if cur != nil && x.depth == depth+1 {
				if *cur, err = appendField(*cur, t, field); err != nil {
					return err
				}
			}
		case xml.EndElement:
			switch x.depth {
			case depth:
				if field == "name" {
					xp.Name = string(name) // for errors later in the package
				}
				cur = nil
			case depth - 1:
				xp.Name, xp.Arch, xp.Checksum.Value = string(name), string(arch), string(sum)
				return nil
			}
		}
	}
}

func nameLabel(name string) string {
	if name == "" {
		return ""
	}
	return " (" + clip(name) + ")"
}

// tooLargeHint tells what to make of a bound error.
func tooLargeHint(err error) string {
	if !errors.Is(err, repoindex.ErrTooLarge) {
		return ""
	}
	return "; no real repository metadata comes near this bound, so the file is corrupt or was made to exhaust memory: fix or stop using the mirror"
}

func packageFrom(x *xmlPackage) (Package, error) {
	p := Package{
		Name:         strings.TrimSpace(x.Name),
		Arch:         strings.TrimSpace(x.Arch),
		Epoch:        x.Version.Epoch,
		Version:      x.Version.Ver,
		Release:      x.Version.Rel,
		Location:     x.Location.Href,
		ChecksumType: x.Checksum.Type,
	}
	if p.Name == "" || p.Arch == "" || p.Version == "" || p.Release == "" {
		return Package{}, fmt.Errorf("missing name, arch, version or release")
	}
	if err := checkLocation(x.Location.Href, x.Location.Base); err != nil {
		return Package{}, err
	}
	var err error
	if p.SHA256, err = sha256Of(x.Checksum); err != nil {
		return Package{}, fmt.Errorf("checksum: %w", err)
	}
	if p.Size, err = optInt(x.Size.Package); err != nil {
		return Package{}, fmt.Errorf("size: %w", err)
	}
	return p, nil
}
