package rpmsig

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/big"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpSig is one OpenPGP signature packet from an rpm signature tag.
type pgpSig struct {
	version     int
	keyID       uint64
	fingerprint []byte
	hash        crypto.Hash
	// prepare returns a fresh hash to feed the signed data into.
	prepare func() (hash.Hash, error)
	// verify checks the signature over what was written to h with pk.
	verify func(pk *packet.PublicKey, h hash.Hash) error
}

// parseSig parses the single signature packet rpm stores in a signature tag.
// v4 and v6 packets go to go-crypto; v3 packets, which go-crypto rejects and
// older rpm signing tools produced, are handled by parseSigV3.
func parseSig(blob []byte) (*pgpSig, error) {
	tag, body, rest, err := splitPacket(blob)
	if err != nil {
		return nil, err
	}
	if tag != 2 {
		return nil, fmt.Errorf("OpenPGP packet type %d is not a signature", tag)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes of trailing data after the signature packet", len(rest))
	}
	if len(body) > 0 && body[0] == 3 {
		return parseSigV3(body)
	}
	p, err := packet.Read(bytes.NewReader(blob))
	if err != nil {
		return nil, fmt.Errorf("parse signature packet: %w", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, fmt.Errorf("OpenPGP packet %T is not a signature", p)
	}
	if sig.SigType != packet.SigTypeBinary {
		return nil, fmt.Errorf("signature type %#x is not a binary document signature", sig.SigType)
	}
	if sig.IssuerKeyId == nil && len(sig.IssuerFingerprint) == 0 {
		return nil, errors.New("signature names no issuer key")
	}
	s := &pgpSig{
		version:     sig.Version,
		fingerprint: sig.IssuerFingerprint,
		hash:        sig.Hash,
		prepare:     sig.PrepareVerify,
		verify: func(pk *packet.PublicKey, h hash.Hash) error {
			return pk.VerifySignature(h, sig)
		},
	}
	if sig.IssuerKeyId != nil {
		s.keyID = *sig.IssuerKeyId
	}
	if err := checkHash(s.hash); err != nil {
		return nil, err
	}
	return s, nil
}

// checkHash refuses hashes rpm itself no longer trusts for signatures.
func checkHash(h crypto.Hash) error {
	switch h {
	case crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512,
		crypto.SHA3_256, crypto.SHA3_512:
		if !h.Available() {
			return fmt.Errorf("signature hash %v is not available", h)
		}
		return nil
	default:
		return fmt.Errorf("signature hash %v is not accepted", h)
	}
}

// splitPacket splits the first OpenPGP packet (RFC 9580 section 4.2, old
// and new header formats, no partial lengths) off b.
func splitPacket(b []byte) (tag int, body, rest []byte, err error) {
	if len(b) < 2 || b[0]&0x80 == 0 {
		return 0, nil, nil, errors.New("not an OpenPGP packet")
	}
	var n uint64
	var hdr int
	if b[0]&0x40 == 0 { // old format
		tag = int(b[0]>>2) & 0xf
		switch b[0] & 3 {
		case 0:
			n, hdr = uint64(b[1]), 2
		case 1:
			if len(b) < 3 {
				return 0, nil, nil, errors.New("truncated OpenPGP packet header")
			}
			n, hdr = uint64(binary.BigEndian.Uint16(b[1:])), 3
		case 2:
			if len(b) < 5 {
				return 0, nil, nil, errors.New("truncated OpenPGP packet header")
			}
			n, hdr = uint64(binary.BigEndian.Uint32(b[1:])), 5
		default:
			n, hdr = uint64(len(b)-1), 1 // indeterminate: to the end
		}
	} else { // new format
		tag = int(b[0] & 0x3f)
		switch l := b[1]; {
		case l < 192:
			n, hdr = uint64(l), 2
		case l < 224:
			if len(b) < 3 {
				return 0, nil, nil, errors.New("truncated OpenPGP packet header")
			}
			n, hdr = (uint64(l)-192)<<8+uint64(b[2])+192, 3
		case l == 255:
			if len(b) < 6 {
				return 0, nil, nil, errors.New("truncated OpenPGP packet header")
			}
			n, hdr = uint64(binary.BigEndian.Uint32(b[2:])), 6
		default:
			return 0, nil, nil, errors.New("partial-length OpenPGP packet in an rpm signature")
		}
	}
	if n > uint64(len(b)-hdr) {
		return 0, nil, nil, fmt.Errorf("OpenPGP packet claims %d bytes, %d present", n, len(b)-hdr)
	}
	return tag, b[hdr : hdr+int(n)], b[hdr+int(n):], nil
}

// parseSigV3 parses a version 3 signature packet (RFC 4880 section 5.2.2):
// version, hashed length 5, type, creation time, issuer key ID, public-key
// and hash algorithms, the left 16 bits of the digest, then the MPIs.
func parseSigV3(body []byte) (*pgpSig, error) {
	if len(body) < 19 {
		return nil, errors.New("truncated v3 signature packet")
	}
	if body[1] != 5 {
		return nil, fmt.Errorf("v3 signature hashed length %d, want 5", body[1])
	}
	sigType := body[2]
	if sigType != byte(packet.SigTypeBinary) {
		return nil, fmt.Errorf("v3 signature type %#x is not a binary document signature", sigType)
	}
	suffix := append([]byte(nil), body[2:7]...) // type and creation time are hashed
	keyID := binary.BigEndian.Uint64(body[7:15])
	pkAlgo := packet.PublicKeyAlgorithm(body[15])
	h, ok := pgpHash(body[16])
	if !ok {
		return nil, fmt.Errorf("v3 signature hash algorithm %d unknown", body[16])
	}
	if err := checkHash(h); err != nil {
		return nil, err
	}
	left16 := body[17:19]
	mpis, err := readMPIs(body[19:])
	if err != nil {
		return nil, fmt.Errorf("v3 signature: %w", err)
	}
	s := &pgpSig{
		version: 3,
		keyID:   keyID,
		hash:    h,
		prepare: func() (hash.Hash, error) { return h.New(), nil },
	}
	s.verify = func(pk *packet.PublicKey, hh hash.Hash) error {
		hh.Write(suffix)
		digest := hh.Sum(nil)
		if !bytes.Equal(digest[:2], left16) {
			return errors.New("v3 signature: digest prefix mismatch")
		}
		switch pkAlgo {
		case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
			pub, ok := pk.PublicKey.(*rsa.PublicKey)
			if !ok || len(mpis) != 1 {
				return errors.New("v3 signature: RSA signature for a non-RSA key")
			}
			sig := mpis[0]
			if k := (pub.N.BitLen() + 7) / 8; len(sig) < k {
				sig = append(make([]byte, k-len(sig)), sig...)
			}
			if err := rsa.VerifyPKCS1v15(pub, h, digest, sig); err != nil {
				return fmt.Errorf("v3 signature: RSA verification failure")
			}
			return nil
		case packet.PubKeyAlgoDSA:
			pub, ok := pk.PublicKey.(*dsa.PublicKey)
			if !ok || len(mpis) != 2 {
				return errors.New("v3 signature: DSA signature for a non-DSA key")
			}
			if q := (pub.Q.BitLen() + 7) / 8; len(digest) > q {
				digest = digest[:q]
			}
			if !dsa.Verify(pub, digest, new(big.Int).SetBytes(mpis[0]), new(big.Int).SetBytes(mpis[1])) {
				return errors.New("v3 signature: DSA verification failure")
			}
			return nil
		default:
			return fmt.Errorf("v3 signature: public-key algorithm %d not supported", pkAlgo)
		}
	}
	return s, nil
}

// pgpHash maps an OpenPGP hash algorithm ID (RFC 9580 section 9.5) to Go's.
func pgpHash(id byte) (crypto.Hash, bool) {
	switch id {
	case 1:
		return crypto.MD5, true
	case 2:
		return crypto.SHA1, true
	case 8:
		return crypto.SHA256, true
	case 9:
		return crypto.SHA384, true
	case 10:
		return crypto.SHA512, true
	case 11:
		return crypto.SHA224, true
	case 12:
		return crypto.SHA3_256, true
	case 14:
		return crypto.SHA3_512, true
	}
	return 0, false
}

// readMPIs reads OpenPGP multiprecision integers (2-byte bit count, then the
// big-endian bytes) until b is used up.
func readMPIs(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 || len(out) == 2 {
			return nil, errors.New("malformed MPI")
		}
		bits := int(binary.BigEndian.Uint16(b))
		n := (bits + 7) / 8
		if len(b)-2 < n {
			return nil, errors.New("truncated MPI")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	if len(out) == 0 {
		return nil, errors.New("no MPI")
	}
	return out, nil
}
