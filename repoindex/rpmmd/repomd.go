package rpmmd

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// MaxRepomd bounds repomd.xml; real ones are a few KiB.
const MaxRepomd = 4 << 20

// MaxRepomdSignature bounds repomd.xml.asc; an armored signature takes
// about 1 KiB, so this leaves room for dozens.
const MaxRepomdSignature = 64 << 10

var (
	// ErrUnknownKey: repomd.xml.asc is by no key in the keyring.
	ErrUnknownKey = errors.New("repomd.xml is signed by no trusted key")
	// ErrBadSignature: the signature does not verify (altered repomd.xml or
	// a corrupt .asc), or the signing key is expired or revoked.
	ErrBadSignature = errors.New("repomd.xml signature does not verify")
	// ErrBadLocation: a location href escapes the repository.
	ErrBadLocation = errors.New("location outside the repository")
)

// Repomd is a parsed repomd.xml.
type Repomd struct {
	// Revision is <revision>, often a Unix time; "" when absent.
	Revision string
	// Data in file order.
	Data []Data
	// SignerKeyID is set by VerifyRepomd: the 16 lower-case hex digit ID of
	// the key that signed repomd.xml.
	SignerKeyID string
}

// Data is one <data type="..."> entry of repomd.xml.
type Data struct {
	// Type is e.g. "primary", "filelists", "other", "primary_db",
	// "updateinfo", "modules".
	Type string
	// Location is the href, relative to the repository root, e.g.
	// "repodata/<hex>-primary.xml.gz".
	Location string
	// ChecksumType is the checksum's type attribute as written ("sha256",
	// "sha", "sha1", "md5", "sha512"...).
	ChecksumType string
	// SHA256 is the digest of the file as stored, or nil unless ChecksumType
	// is sha256.
	SHA256 []byte
	// OpenSHA256 is the digest of the decompressed file, or nil.
	OpenSHA256 []byte
	// Size and OpenSize are the stored and decompressed sizes, -1 if absent.
	Size, OpenSize int64
	// Timestamp is <timestamp> in Unix seconds, 0 if absent.
	Timestamp int64
}

type xmlChecksum struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type xmlData struct {
	Type         string
	Checksum     xmlChecksum
	OpenChecksum *xmlChecksum
	Location     struct{ Href, Base string }
	Timestamp    string
	Size         string
	OpenSize     string
}

type xmlRepomd struct {
	Revision string
	Data     []xmlData
}

// ParseRepomd parses repomd.xml (at most MaxRepomd bytes, within the token
// bounds of ParsePrimary and at most 1024 <data> entries; errors of a bound
// wrap repoindex.ErrTooLarge). It does not check any signature: use
// VerifyRepomd for bytes that came from anyone but a trusted origin over
// TLS.
func ParseRepomd(r io.Reader) (*Repomd, error) {
	x := newXMLReader(r)
	x.total, x.totalWhy = MaxRepomd, fmt.Sprintf("repomd.xml larger than %d bytes (real ones are a few KiB)", MaxRepomd)
	xr, err := readRepomd(x)
	if err != nil {
		return nil, fmt.Errorf("rpmmd: parse repomd.xml: %w%s", err, tooLargeHint(err))
	}
	out := &Repomd{Revision: strings.TrimSpace(xr.Revision)}
	seen := map[string]bool{}
	for i, d := range xr.Data {
		what := fmt.Sprintf("repomd.xml data #%d (%s)", i+1, d.Type)
		if d.Type == "" {
			return nil, fmt.Errorf("rpmmd: %s: no type attribute", what)
		}
		if seen[d.Type] {
			return nil, fmt.Errorf("rpmmd: %s: type listed twice", what)
		}
		seen[d.Type] = true
		if err := checkLocation(d.Location.Href, d.Location.Base); err != nil {
			return nil, fmt.Errorf("rpmmd: %s: %w", what, err)
		}
		e := Data{
			Type:         d.Type,
			Location:     d.Location.Href,
			ChecksumType: d.Checksum.Type,
		}
		if e.SHA256, err = sha256Of(d.Checksum); err != nil {
			return nil, fmt.Errorf("rpmmd: %s: checksum: %w", what, err)
		}
		if d.OpenChecksum != nil {
			if e.OpenSHA256, err = sha256Of(*d.OpenChecksum); err != nil {
				return nil, fmt.Errorf("rpmmd: %s: open-checksum: %w", what, err)
			}
		}
		if e.Size, err = optInt(d.Size); err != nil {
			return nil, fmt.Errorf("rpmmd: %s: size: %w", what, err)
		}
		if e.OpenSize, err = optInt(d.OpenSize); err != nil {
			return nil, fmt.Errorf("rpmmd: %s: open-size: %w", what, err)
		}
		if ts := strings.TrimSpace(d.Timestamp); ts != "" {
			// createrepo writes integers; old yum tools wrote floats.
			f, err := strconv.ParseFloat(ts, 64)
			if err != nil || f < 0 || f > 1<<62 {
				return nil, fmt.Errorf("rpmmd: %s: bad timestamp %q", what, clip(ts))
			}
			e.Timestamp = int64(f)
		}
		out.Data = append(out.Data, e)
	}
	return out, nil
}

// readRepomd reads the document: <repomd> with <revision> and <data>
// children; other elements are skipped. A field given twice is an error.
func readRepomd(x *xmlReader) (*xmlRepomd, error) {
	var (
		out      xmlRepomd
		sawRoot  bool
		revision []byte
		sawRev   bool
		inRev    bool
	)
	for {
		tok, err := x.token()
		if err == io.EOF {
			if !sawRoot {
				return nil, errors.New("no <repomd> element")
			}
			out.Revision = string(revision)
			return &out, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch {
			case x.depth == 1:
				if t.Name.Local != "repomd" {
					return nil, fmt.Errorf("root element <%s>, want <repomd>", clip(t.Name.Local))
				}
				sawRoot = true
			case x.depth == 2 && t.Name.Local == "revision":
				if sawRev {
					return nil, errors.New("<revision> given twice")
				}
				sawRev, inRev = true, true
			case x.depth == 2 && t.Name.Local == "data":
				if len(out.Data) == maxRepomdData {
					return nil, fmt.Errorf("%w: more than %d <data> entries", repoindex.ErrTooLarge, maxRepomdData)
				}
				d, err := readData(x, t)
				if err != nil {
					return nil, fmt.Errorf("<data> #%d: %w", len(out.Data)+1, err)
				}
				out.Data = append(out.Data, d)
			}
		case xml.CharData:
			if inRev && x.depth == 2 {
				if revision, err = appendField(revision, t, "revision"); err != nil {
					return nil, err
				}
			}
		case xml.EndElement:
			if x.depth == 1 {
				inRev = false
			}
		}
	}
}

// readData reads one <data> element whose start tag t was just read.
func readData(x *xmlReader, t xml.StartElement) (xmlData, error) {
	const depth = 2 // of <data>
	var d xmlData
	var err error
	if d.Type, err = attr(t, "type"); err != nil {
		return d, err
	}
	var (
		cur   *[]byte
		field string
		seen  = map[string]bool{}
		texts = map[string]*[]byte{}
	)
	for {
		tok, err := x.token()
		if err == io.EOF {
			return d, fmt.Errorf("unexpected end of file: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return d, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if x.depth != depth+1 {
				continue
			}
			cur, field = nil, t.Name.Local
			switch field {
			case "checksum", "open-checksum", "location", "timestamp", "size", "open-size":
			default:
				continue
			}
			if seen[field] {
				return d, fmt.Errorf("<%s> given twice", field)
			}
			seen[field] = true
			switch field {
			case "checksum":
				d.Checksum.Type, err = attr(t, "type")
			case "open-checksum":
				d.OpenChecksum = &xmlChecksum{}
				d.OpenChecksum.Type, err = attr(t, "type")
			case "location":
				if d.Location.Href, err = attr(t, "href"); err == nil {
					d.Location.Base, err = attr(t, "base")
				}
			}
			if err != nil {
				return d, err
			}
			if field != "location" {
				cur = new([]byte)
				texts[field] = cur
			}
		case xml.CharData:
			if cur != nil && x.depth == depth+1 {
				if *cur, err = appendField(*cur, t, field); err != nil {
					return d, err
				}
			}
		case xml.EndElement:
			switch x.depth {
			case depth:
				cur = nil
			case depth - 1:
				text := func(f string) string {
					if b := texts[f]; b != nil {
						return string(*b)
					}
					return ""
				}
				d.Checksum.Value = text("checksum")
				if d.OpenChecksum != nil {
					d.OpenChecksum.Value = text("open-checksum")
				}
				d.Timestamp, d.Size, d.OpenSize = text("timestamp"), text("size"), text("open-size")
				return d, nil
			}
		}
	}
}

// Find returns the entry of the given type, or nil.
func (r *Repomd) Find(typ string) *Data {
	for i := range r.Data {
		if r.Data[i].Type == typ {
			return &r.Data[i]
		}
	}
	return nil
}

// Expect returns what repomd.xml promises about the file at href (a
// location as written in repomd.xml): its SHA-256 and size. ok is false
// when no entry has that location or its checksum is not SHA-256.
func (r *Repomd) Expect(href string) (e repoindex.Expectation, ok bool) {
	for _, d := range r.Data {
		if d.Location != href || d.SHA256 == nil {
			continue
		}
		return repoindex.Expectation{SHA256: d.SHA256, Size: d.Size, Key: repoindex.DigestKey(d.SHA256)}, true
	}
	return repoindex.Expectation{}, false
}

// VerifyRepomd checks that asc (repomd.xml.asc: a detached OpenPGP
// signature, armored or binary) is a valid signature of xmlData by a key in
// kr, and only then parses xmlData. Errors wrap ErrUnknownKey or
// ErrBadSignature; an empty keyring trusts nothing. xmlData longer than
// MaxRepomd or asc longer than MaxRepomdSignature are refused before any
// work, with an error wrapping repoindex.ErrTooLarge (and ErrBadSignature
// for asc). On error the Repomd is always nil.
func VerifyRepomd(xmlData, asc []byte, kr openpgp.KeyRing) (*Repomd, error) {
	if kr == nil {
		return nil, fmt.Errorf("rpmmd: repomd.xml: %w: no keys configured", ErrUnknownKey)
	}
	if len(xmlData) > MaxRepomd {
		return nil, fmt.Errorf("rpmmd: repomd.xml: %w: %d bytes, more than the %d accepted (real ones are a few KiB); not checking its signature", repoindex.ErrTooLarge, len(xmlData), MaxRepomd)
	}
	if len(asc) > MaxRepomdSignature {
		return nil, fmt.Errorf("rpmmd: repomd.xml.asc: %w: %w: %d bytes, more than the %d accepted (one signature takes about 1 KiB)", ErrBadSignature, repoindex.ErrTooLarge, len(asc), MaxRepomdSignature)
	}
	if len(bytes.TrimSpace(asc)) == 0 {
		return nil, fmt.Errorf("rpmmd: repomd.xml.asc: %w: empty signature file", ErrBadSignature)
	}
	sigBody := io.Reader(bytes.NewReader(asc))
	if bytes.Contains(asc, []byte("-----BEGIN PGP SIGNATURE-----")) {
		blk, err := armor.Decode(bytes.NewReader(asc[bytes.Index(asc, []byte("-----BEGIN PGP SIGNATURE-----")):]))
		if err != nil {
			return nil, fmt.Errorf("rpmmd: repomd.xml.asc: %w: bad armor: %v", ErrBadSignature, err)
		}
		sigBody = blk.Body
	}
	sig, _, err := openpgp.VerifyDetachedSignature(kr, bytes.NewReader(xmlData), sigBody, nil)
	if err != nil {
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			return nil, fmt.Errorf("rpmmd: repomd.xml: %w: %v; import the repository's key if it is to be trusted", ErrUnknownKey, err)
		}
		return nil, fmt.Errorf("rpmmd: repomd.xml: %w: %v", ErrBadSignature, err)
	}
	r, err := ParseRepomd(bytes.NewReader(xmlData))
	if err != nil {
		return nil, err
	}
	if sig != nil && sig.IssuerKeyId != nil {
		r.SignerKeyID = fmt.Sprintf("%016x", *sig.IssuerKeyId)
	}
	return r, nil
}

// sha256Of returns the digest of a sha256 checksum element, nil for other
// types, and an error for a sha256 value that is not 64 hex digits.
func sha256Of(c xmlChecksum) ([]byte, error) {
	if !strings.EqualFold(c.Type, "sha256") {
		return nil, nil
	}
	v := strings.TrimSpace(c.Value)
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("sha256 value %q is not 64 hex digits", clip(v))
	}
	return b, nil
}

func optInt(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", clip(s))
	}
	return n, nil
}

// checkLocation refuses hrefs that leave the repository: empty, absolute,
// with a scheme, a backslash, NUL, or a ".." segment, or with an xml:base.
func checkLocation(href, base string) error {
	switch {
	case base != "":
		return fmt.Errorf("%w: %q has xml:base %q", ErrBadLocation, clip(href), clip(base))
	case href == "":
		return fmt.Errorf("%w: empty href", ErrBadLocation)
	case strings.HasPrefix(href, "/"), strings.Contains(href, "://"), strings.ContainsAny(href, "\\\x00?#"):
		return fmt.Errorf("%w: %q is not a relative path", ErrBadLocation, clip(href))
	}
	for _, seg := range strings.Split(href, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("%w: %q has a %q segment", ErrBadLocation, clip(href), seg)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
