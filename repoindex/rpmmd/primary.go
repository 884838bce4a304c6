package rpmmd

import (
	"encoding/xml"
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
// <package>, in file order. It decodes one package element at a time. A
// package without name, arch, version, release or location, a sha256
// checksum that is not 64 hex digits, a bad size, or a location that leaves
// the repository (ErrBadLocation) stops parsing with an error naming the
// package; an error from fn is returned as is.
func ParsePrimary(r io.Reader, fn func(Package) error) error {
	dec := xml.NewDecoder(r)
	depth, n := 0, 0
	sawRoot := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !sawRoot {
				return fmt.Errorf("rpmmd: primary.xml: no <metadata> element")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("rpmmd: primary.xml after %d packages: %w", n, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				if t.Name.Local != "metadata" {
					return fmt.Errorf("rpmmd: primary.xml: root element <%s>, want <metadata>", t.Name.Local)
				}
				sawRoot = true
				continue
			}
			if depth != 2 || t.Name.Local != "package" {
				continue
			}
			var x xmlPackage
			if err := dec.DecodeElement(&x, &t); err != nil {
				return fmt.Errorf("rpmmd: primary.xml package #%d: %w", n+1, err)
			}
			depth--
			n++
			p, err := packageFrom(&x)
			if err != nil {
				return fmt.Errorf("rpmmd: primary.xml package #%d (%s): %w", n, clip(x.Name), err)
			}
			if err := fn(p); err != nil {
				return err
			}
		case xml.EndElement:
			depth--
		}
	}
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
