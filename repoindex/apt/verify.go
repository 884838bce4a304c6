package apt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Sentinel errors of VerifyInRelease and VerifyRelease, for errors.Is.
var (
	// ErrUnknownKey: the data is signed, but by no key in the keyring. The
	// repository is untrusted: its indexes and packages cannot be verified.
	ErrUnknownKey = errors.New("signed by no trusted key")
	// ErrBadSignature: the data is unsigned or malformed, or a signature by
	// a trusted key does not verify (the data was altered), or every trusted
	// key that signed it has expired or was revoked.
	ErrBadSignature = errors.New("bad or missing signature")
	// ErrKeyExpired refines ErrBadSignature: the only trusted signatures
	// were made by expired keys, or have expired themselves. apt refuses
	// them too (gpgv's EXPKEYSIG/EXPSIG).
	ErrKeyExpired = errors.New("signing key or signature expired")
	// ErrKeyRevoked refines ErrBadSignature: the only trusted signatures
	// were made by revoked keys (gpgv's REVKEYSIG).
	ErrKeyRevoked = errors.New("signing key revoked")
	// ErrExpired: the signature is good but the Release is past its
	// Valid-Until: the mirror is stale, or the clock is wrong.
	ErrExpired = errors.New("release expired")
)

// VerifyInRelease verifies a clearsigned InRelease file with the keys of kr
// at time now (time.Now() when zero) and returns the Release parsed from the
// signed text. Text before or after the signed message is ignored; a second
// signed message is refused as ambiguous.
//
// Like apt, it accepts the file when at least one signature by a trusted key
// verifies and none by a trusted key fails; signatures by unknown keys, and
// by trusted keys that have expired, are ignored when another one is good.
// Errors wrap ErrBadSignature (and then maybe ErrKeyExpired or
// ErrKeyRevoked), ErrUnknownKey or ErrExpired; an error wrapping none of
// them means the signature is good but the signed Release is malformed.
// Data over MaxReleaseSize is refused before any signature work, and a
// signed Release over ParseRelease's bounds after it, with an error
// wrapping repoindex.ErrTooLarge (only).
func VerifyInRelease(data []byte, kr *Keyring, now time.Time) (*Release, error) {
	if len(data) > MaxReleaseSize {
		return nil, tooLarge("InRelease", len(data))
	}
	block, rest := clearsign.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("InRelease: %w: not a clearsigned OpenPGP message", ErrBadSignature)
	}
	if bytes.Contains(rest, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		return nil, fmt.Errorf("InRelease: %w: more than one signed message", ErrBadSignature)
	}
	if block.ArmoredSignature == nil || block.ArmoredSignature.Type != openpgp.SignatureType {
		return nil, fmt.Errorf("InRelease: %w: no signature block", ErrBadSignature)
	}
	sig, err := readSignature(block.ArmoredSignature.Body)
	if err != nil {
		return nil, fmt.Errorf("InRelease: %w", err)
	}
	return verifyAndParse("InRelease", block.Bytes, block.Plaintext, sig, kr, now)
}

// ParseRoot parses a Release, or the signed text of an InRelease, without
// checking any signature: for bytes verified before (a root a pkgswarm node
// accepted and serves, or holds by its digest).
func ParseRoot(data []byte) (*Release, error) {
	if block, _ := clearsign.Decode(data); block != nil {
		data = block.Plaintext
	}
	return ParseRelease(data)
}

// VerifyRelease verifies a Release file against its detached signature
// (Release.gpg, armored or binary) as VerifyInRelease does.
func VerifyRelease(release, detachedSig []byte, kr *Keyring, now time.Time) (*Release, error) {
	if len(release) > MaxReleaseSize {
		return nil, tooLarge("Release", len(release))
	}
	if len(detachedSig) > MaxSignatureSize {
		return nil, fmt.Errorf("Release.gpg: %w: %w: %d bytes, more than the %d accepted (a signature takes about 1 KiB)",
			ErrBadSignature, repoindex.ErrTooLarge, len(detachedSig), MaxSignatureSize)
	}
	sig := detachedSig
	if trimmed := bytes.TrimLeft(detachedSig, " \t\r\n"); bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP")) {
		block, err := armor.Decode(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fmt.Errorf("Release.gpg: %w: %v", ErrBadSignature, err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, fmt.Errorf("Release.gpg: %w: armored %q block, want %q", ErrBadSignature, block.Type, openpgp.SignatureType)
		}
		if sig, err = readSignature(block.Body); err != nil {
			return nil, fmt.Errorf("Release.gpg: %w", err)
		}
	}
	return verifyAndParse("Release", release, release, sig, kr, now)
}

// tooLarge is the error for a root over MaxReleaseSize, given before any
// signature work.
func tooLarge(what string, n int) error {
	return fmt.Errorf("%s: %w: %d bytes, more than the %d accepted (Debian's largest is a few hundred KiB); not checking its signature: the mirror serves a corrupt or hostile file",
		what, repoindex.ErrTooLarge, n, MaxReleaseSize)
}

// readSignature reads a dearmored signature, at most MaxSignatureSize bytes.
func readSignature(r io.Reader) ([]byte, error) {
	sig, err := io.ReadAll(io.LimitReader(r, MaxSignatureSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the armored signature: %v", ErrBadSignature, err)
	}
	if len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: %w: signature longer than %d bytes", ErrBadSignature, repoindex.ErrTooLarge, MaxSignatureSize)
	}
	return sig, nil
}

// verifyAndParse checks sig over signed, then parses plain (the signed text,
// dash-unescaped for a clearsigned file) and checks Valid-Until.
func verifyAndParse(what string, signed, plain, sig []byte, kr *Keyring, now time.Time) (*Release, error) {
	if now.IsZero() {
		now = time.Now()
	}
	signer, signers, err := verifySignatures(signed, sig, kr, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	rel, err := ParseRelease(plain)
	if err != nil {
		return nil, fmt.Errorf("%s signed by %s: %w", what, signer, err)
	}
	rel.Signer = signer
	rel.Signers = signers
	if !rel.ValidUntil.IsZero() && now.After(rel.ValidUntil) {
		return nil, fmt.Errorf("%s of %s: %w: Valid-Until %s is %s before now (%s); the mirror is stale or this machine's clock is wrong",
			what, suiteName(rel), ErrExpired, rel.ValidUntil.Format(time.RFC1123),
			now.Sub(rel.ValidUntil).Round(time.Second), now.UTC().Format(time.RFC1123))
	}
	return rel, nil
}

func suiteName(rel *Release) string {
	switch {
	case rel.Suite != "":
		return "suite " + rel.Suite
	case rel.Codename != "":
		return "codename " + rel.Codename
	}
	return "the repository"
}

// sigOutcome is what became of one signature packet.
type sigOutcome int

const (
	sigUnknown  sigOutcome = iota // issuer not in the keyring
	sigGood                       // verifies, key valid
	sigBad                        // trusted key, does not verify
	sigExpired                    // trusted key or signature expired
	sigRevoked                    // trusted key revoked
	sigUnusable                   // unsupported algorithm or malformed
)

// maxSignatures bounds the signature packets of one file.
const maxSignatures = 16

// severity orders the failures of trusted-key signatures for the error that
// reports them.
var severity = map[sigOutcome]int{sigUnusable: 1, sigExpired: 2, sigRevoked: 3, sigBad: 4}

// verifySignatures checks each signature packet in sig over signed and
// returns the signer ("FINGERPRINT user id") of the first good one and the
// primary-key fingerprints of every good one, or an error wrapping a
// sentinel. Each signature is verified on its own, so that one by an expired
// key or an unknown key cannot hide a good one.
func verifySignatures(signed, sig []byte, kr *Keyring, now time.Time) (string, []string, error) {
	raws, err := splitPackets(sig)
	if err != nil {
		return "", nil, fmt.Errorf("%w: malformed signature: %v", ErrBadSignature, err)
	}
	if len(raws) == 0 {
		return "", nil, fmt.Errorf("%w: no signature packet", ErrBadSignature)
	}
	if len(raws) > maxSignatures {
		// Each signature by a trusted key costs a hash of the whole file;
		// archives sign with two or three keys.
		return "", nil, fmt.Errorf("%w: %d signatures, more than the %d accepted", ErrBadSignature, len(raws), maxSignatures)
	}
	var ring signingKeyring
	if kr != nil {
		ring.el = kr.entities
	}
	var (
		good     string
		goods    []string // fingerprints of every good signature's key
		problems []string // one line per trusted-key signature that failed
		unknown  []string // issuers not in the keyring
		worst    sigOutcome
	)
	for _, raw := range raws {
		outcome, who, err := verifyOne(ring, signed, raw, now)
		switch outcome {
		case sigGood:
			if good == "" {
				good = who
			}
			fpr, _, _ := strings.Cut(who, " ")
			if !slices.Contains(goods, fpr) {
				goods = append(goods, fpr)
			}
			continue
		case sigUnknown:
			unknown = append(unknown, who)
			continue
		}
		problems = append(problems, fmt.Sprintf("key %s: %v", who, err))
		if severity[outcome] > severity[worst] {
			worst = outcome
		}
	}
	if worst == sigBad {
		return "", nil, fmt.Errorf("%w: a trusted key's signature does not verify, so the data was altered or corrupted: %s",
			ErrBadSignature, strings.Join(problems, "; "))
	}
	if good != "" {
		return good, goods, nil
	}
	switch worst {
	case sigRevoked:
		return "", nil, fmt.Errorf("%w: %w: %s", ErrBadSignature, ErrKeyRevoked, strings.Join(problems, "; "))
	case sigExpired:
		return "", nil, fmt.Errorf("%w: %w: %s; update the keyring (e.g. the distribution's archive-keyring package) or check the clock",
			ErrBadSignature, ErrKeyExpired, strings.Join(problems, "; "))
	case sigUnusable:
		return "", nil, fmt.Errorf("%w: no usable signature: %s", ErrBadSignature, strings.Join(problems, "; "))
	}
	return "", nil, fmt.Errorf("%w (key %s); add the repository's key to a trusted keyring to verify it",
		ErrUnknownKey, strings.Join(unknown, ", "))
}

// verifyOne verifies one signature packet. who names the signer: the
// fingerprint and user ID of a trusted key, or the issuer key ID.
func verifyOne(ring signingKeyring, signed, raw []byte, now time.Time) (outcome sigOutcome, who string, err error) {
	p, err := packet.Read(bytes.NewReader(raw))
	if err != nil {
		return sigUnusable, "(unreadable)", err
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return sigUnusable, "(not a signature)", fmt.Errorf("packet %T where a signature was expected", p)
	}
	who = issuerName(s)
	if s.IssuerKeyId == nil {
		return sigUnknown, who, nil
	}
	keys := ring.KeysByIdUsage(*s.IssuerKeyId, packet.KeyFlagSign)
	if len(keys) == 0 {
		return sigUnknown, who, nil
	}
	who = signerName(keys[0].Entity)
	at := now
	_, signer, err := openpgp.VerifyDetachedSignature(ring, bytes.NewReader(signed), bytes.NewReader(raw), &packet.Config{Time: func() time.Time { return at }})
	if errors.Is(err, pgperrors.ErrSignatureExpired) && s.CreationTime.After(now) {
		// Made "in the future": gpgv accepts such a signature (a signer's
		// clock ahead of ours); judge the keys at its creation time.
		at = s.CreationTime
		_, signer, err = openpgp.VerifyDetachedSignature(ring, bytes.NewReader(signed), bytes.NewReader(raw), &packet.Config{Time: func() time.Time { return at }})
	}
	if signer != nil {
		who = signerName(signer)
	}
	var sigErr pgperrors.SignatureError
	switch {
	case err == nil:
		return sigGood, who, nil
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrSignatureExpired):
		return sigExpired, who, err
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return sigRevoked, who, err
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return sigUnknown, who, nil
	case errors.As(err, &sigErr):
		return sigBad, who, err
	}
	return sigUnusable, who, err
}

func signerName(e *openpgp.Entity) string {
	name := fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
	if id := e.PrimaryIdentity(); id != nil {
		name += " " + id.Name
	}
	return name
}

func issuerName(s *packet.Signature) string {
	switch {
	case len(s.IssuerFingerprint) > 0:
		return fmt.Sprintf("%X", s.IssuerFingerprint)
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *s.IssuerKeyId)
	}
	return "(no issuer)"
}

// splitPackets splits a sequence of OpenPGP packets (RFC 9580 section 4.2)
// into the raw bytes of each, so that every signature can be verified on its
// own. Only signature packets are expected; marker packets are dropped;
// partial (streamed) lengths, which a signature never uses, are refused.
func splitPackets(data []byte) ([][]byte, error) {
	const (
		tagSignature = 2
		tagMarker    = 10
	)
	var out [][]byte
	for off := 0; off < len(data); {
		b0 := data[off]
		if b0&0x80 == 0 {
			return nil, fmt.Errorf("byte %d: not a packet header", off)
		}
		var tag, hdr, n int
		if b0&0x40 != 0 { // new format
			tag = int(b0 & 0x3f)
			if off+1 >= len(data) {
				return nil, fmt.Errorf("byte %d: truncated packet header", off)
			}
			o1 := int(data[off+1])
			switch {
			case o1 < 192:
				hdr, n = 2, o1
			case o1 < 224:
				if off+2 >= len(data) {
					return nil, fmt.Errorf("byte %d: truncated packet header", off)
				}
				hdr, n = 3, (o1-192)<<8+int(data[off+2])+192
			case o1 == 255:
				if off+6 > len(data) {
					return nil, fmt.Errorf("byte %d: truncated packet header", off)
				}
				hdr, n = 6, int(binary.BigEndian.Uint32(data[off+2:off+6]))
			default:
				return nil, fmt.Errorf("byte %d: partial body length in a signature", off)
			}
		} else { // old format
			tag = int(b0>>2) & 0xf
			switch b0 & 3 {
			case 0:
				hdr = 2
			case 1:
				hdr = 3
			case 2:
				hdr = 5
			case 3:
				hdr, n = 1, len(data)-off-1 // indeterminate: to the end
			}
			if b0&3 != 3 {
				if off+hdr > len(data) {
					return nil, fmt.Errorf("byte %d: truncated packet header", off)
				}
				for _, c := range data[off+1 : off+hdr] {
					n = n<<8 | int(c)
				}
			}
		}
		if n < 0 || n > len(data)-off-hdr {
			return nil, fmt.Errorf("byte %d: packet length %d runs past the end", off, n)
		}
		switch tag {
		case tagSignature:
			out = append(out, data[off:off+hdr+n])
		case tagMarker:
		default:
			return nil, fmt.Errorf("byte %d: packet type %d where only signatures belong", off, tag)
		}
		off += hdr + n
	}
	return out, nil
}
