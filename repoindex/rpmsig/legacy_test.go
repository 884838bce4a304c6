package rpmsig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
)

// Signatures rpmsign 4.18 no longer makes (v3 packets, header+payload
// signatures on packages without PAYLOADDIGEST) are crafted here: the test
// takes a real unsigned rpm, rewrites its headers, and signs with a key made
// by go-crypto. That exercises the parsing and policy of those paths; the
// cryptography is the standard library's and go-crypto's.

type blob struct {
	tag uint32
	typ uint32
	val []byte
}

// encodeHeader writes h back out without the tags in drop and with add
// appended (each BIN or STRING value placed at the end of the data store).
func encodeHeader(h *header, drop map[uint32]bool, add []blob) []byte {
	type ent struct{ tag, typ, off, count uint32 }
	var ents []ent
	il := len(h.raw[16:]) - len(h.data)
	idx := h.raw[16 : 16+il]
	for i := 0; i+16 <= len(idx); i += 16 {
		tag := binary.BigEndian.Uint32(idx[i:])
		if drop[tag] {
			continue
		}
		ents = append(ents, ent{tag, binary.BigEndian.Uint32(idx[i+4:]), binary.BigEndian.Uint32(idx[i+8:]), binary.BigEndian.Uint32(idx[i+12:])})
	}
	data := append([]byte(nil), h.data...)
	for _, a := range add {
		count := uint32(len(a.val))
		if a.typ == typeString {
			count = 1
		}
		ents = append(ents, ent{a.tag, a.typ, uint32(len(data)), count})
		data = append(data, a.val...)
	}
	var out bytes.Buffer
	binary.Write(&out, binary.BigEndian, []uint32{headerMagic, 0, uint32(len(ents)), uint32(len(data))})
	for _, e := range ents {
		binary.Write(&out, binary.BigEndian, []uint32{e.tag, e.typ, e.off, e.count})
	}
	out.Write(data)
	return out.Bytes()
}

type rpmParts struct {
	lead    []byte
	sig     *header
	main    *header
	payload []byte
}

func splitRPM(t *testing.T, b []byte) rpmParts {
	t.Helper()
	r := bytes.NewReader(b)
	p := rpmParts{lead: b[:leadSize]}
	r.Seek(leadSize, 0)
	var err error
	if p.sig, _, err = readHeader(context.Background(), r, true, nil); err != nil {
		t.Fatal(err)
	}
	if p.main, _, err = readHeader(context.Background(), r, false, nil); err != nil {
		t.Fatal(err)
	}
	p.payload = b[len(b)-r.Len():]
	return p
}

func (p rpmParts) join(sig, main []byte) []byte {
	var out bytes.Buffer
	out.Write(p.lead)
	out.Write(sig)
	for out.Len()%8 != 0 {
		out.WriteByte(0)
	}
	out.Write(main)
	out.Write(p.payload)
	return out.Bytes()
}

// v3Sig makes a version 3 RSA/SHA-256 binary signature packet over data.
func v3Sig(t *testing.T, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	priv := e.PrivateKey.PrivateKey.(*rsa.PrivateKey)
	hashed := []byte{0x00, 0, 0, 0, 0} // binary signature, creation time
	binary.BigEndian.PutUint32(hashed[1:], uint32(time.Now().Unix()))
	h := sha256.New()
	h.Write(data)
	h.Write(hashed)
	digest := h.Sum(nil)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{3, 5}
	body = append(body, hashed...)
	body = binary.BigEndian.AppendUint64(body, e.PrimaryKey.KeyId)
	body = append(body, byte(packet.PubKeyAlgoRSA), 8, digest[0], digest[1])
	body = binary.BigEndian.AppendUint16(body, uint16(priv.N.BitLen()))
	body = append(body, sig...)
	pkt := []byte{0x80 | 2<<2 | 1} // old format, tag 2, two-byte length
	pkt = binary.BigEndian.AppendUint16(pkt, uint16(len(body)))
	return append(pkt, body...)
}

// v4Sig makes a version 4 binary signature packet over data with go-crypto.
func v4Sig(t *testing.T, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := openpgp.DetachSign(&out, e, bytes.NewReader(data), &packet.Config{DefaultHash: crypto.SHA256}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestCraftedSignatures(t *testing.T) {
	ent, err := openpgp.NewEntity("crafted", "", "crafted@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := ent.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(pub.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(rpmrepo.BuildRPM(t, rpmrepo.Package{Name: "crafted", Size: 3000, Seed: 7}))
	if err != nil {
		t.Fatal(err)
	}
	p := splitRPM(t, src)
	mainRaw := p.main.raw
	// The main header as rpm < 4.14 wrote it: no payload digest.
	noDigest := encodeHeader(p.main, map[uint32]bool{tagPayloadDigest: true, tagPayloadDigestAlgo: true}, nil)
	withPayload := func(hdr []byte, payload []byte) []byte { return append(append([]byte(nil), hdr...), payload...) }
	flipped := append([]byte(nil), p.payload...)
	flipped[len(flipped)/2] ^= 1

	sigHeader := func(add ...blob) []byte { return encodeHeader(p.sig, nil, add) }
	badV3 := v3Sig(t, ent, mainRaw)
	badV3[len(badV3)-1] ^= 1

	tests := []struct {
		name string
		rpm  []byte
		want error
	}{
		{"v3 header signature", p.join(sigHeader(blob{sigTagRSA, typeBin, v3Sig(t, ent, mainRaw)}), mainRaw), nil},
		{"v3 signature corrupted", p.join(sigHeader(blob{sigTagRSA, typeBin, badV3}), mainRaw), ErrBadSignature},
		{"v3 signature over another header", p.join(sigHeader(blob{sigTagRSA, typeBin, v3Sig(t, ent, noDigest)}), mainRaw), ErrBadSignature},
		{"header+payload signature, no payload digest",
			p.join(sigHeader(blob{sigTagPGP, typeBin, v4Sig(t, ent, withPayload(noDigest, p.payload))}), noDigest), nil},
		{"v3 header+payload signature, no payload digest",
			p.join(sigHeader(blob{sigTagGPG, typeBin, v3Sig(t, ent, withPayload(noDigest, p.payload))}), noDigest), nil},
		{"header+payload signature, payload altered",
			rpmParts{p.lead, p.sig, p.main, flipped}.join(sigHeader(blob{sigTagPGP, typeBin, v4Sig(t, ent, withPayload(noDigest, p.payload))}), noDigest), ErrBadSignature},
		{"header-only signature, no payload digest",
			p.join(sigHeader(blob{sigTagRSA, typeBin, v4Sig(t, ent, noDigest)}), noDigest), ErrPayloadDigest},
		{"signature tag of the wrong type", p.join(sigHeader(blob{sigTagRSA, typeString, []byte("x\x00")}), mainRaw), ErrBadSignature},
		{"signature blob not OpenPGP", p.join(sigHeader(blob{sigTagRSA, typeBin, []byte("hello")}), mainRaw), ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Verify(bytes.NewReader(tc.rpm), "crafted.rpm", keys)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if info.NEVRA != "crafted-1.0-1.mga9.noarch" || info.Size != int64(len(tc.rpm)) {
					t.Errorf("info %+v", info)
				}
				if sum := sha256.Sum256(p.payload); !bytes.Equal(info.PayloadSHA256, sum[:]) {
					t.Errorf("PayloadSHA256 %x, want %x", info.PayloadSHA256, sum)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
}
