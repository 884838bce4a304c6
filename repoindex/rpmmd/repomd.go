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

type xmlRepomd struct {
	XMLName  xml.Name `xml:"repomd"`
	Revision string   `xml:"revision"`
	Data     []struct {
		Type         string       `xml:"type,attr"`
		Checksum     xmlChecksum  `xml:"checksum"`
		OpenChecksum *xmlChecksum `xml:"open-checksum"`
		Location     struct {
			Href string `xml:"href,attr"`
			Base string `xml:"base,attr"`
		} `xml:"location"`
		Timestamp string `xml:"timestamp"`
		Size      string `xml:"size"`
		OpenSize  string `xml:"open-size"`
	} `xml:"data"`
}

// ParseRepomd parses repomd.xml (at most MaxRepomd bytes). It does not check
// any signature: use VerifyRepomd for bytes that came from anyone but a
// trusted origin over TLS.
func ParseRepomd(r io.Reader) (*Repomd, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRepomd+1))
	if err != nil {
		return nil, fmt.Errorf("rpmmd: read repomd.xml: %w", err)
	}
	if len(data) > MaxRepomd {
		return nil, fmt.Errorf("rpmmd: repomd.xml is larger than %d bytes", MaxRepomd)
	}
	var x xmlRepomd
	dec := xml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("rpmmd: parse repomd.xml: %w", err)
	}
	out := &Repomd{Revision: strings.TrimSpace(x.Revision)}
	seen := map[string]bool{}
	for i, d := range x.Data {
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
// ErrBadSignature; an empty keyring trusts nothing.
func VerifyRepomd(xmlData, asc []byte, kr openpgp.KeyRing) (*Repomd, error) {
	if kr == nil {
		return nil, fmt.Errorf("rpmmd: repomd.xml: %w: no keys configured", ErrUnknownKey)
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
