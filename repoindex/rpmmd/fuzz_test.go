package rpmmd_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmmd"
)

// FuzzVerifyRepomd feeds repomd.xml and repomd.xml.asc pairs to
// VerifyRepomd with one trusted key: only the bytes the key signed verify
// (the fuzzer cannot forge a signature), an error never comes with a
// Repomd and always says what kind of failure it is, and allocation stays
// within a bound of the input.
func FuzzVerifyRepomd(f *testing.F) {
	ent, err := openpgp.NewEntity("fuzz", "", "fuzz@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		f.Fatal(err)
	}
	var pub bytes.Buffer
	ent.Serialize(&pub)
	kr, err := openpgp.ReadKeyRing(&pub)
	if err != nil {
		f.Fatal(err)
	}
	signed := []byte(sampleRepomd)
	var asc, bin bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&asc, ent, bytes.NewReader(signed), nil); err != nil {
		f.Fatal(err)
	}
	if err := openpgp.DetachSign(&bin, ent, bytes.NewReader(signed), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(signed, asc.Bytes())
	f.Add(signed, bin.Bytes())
	f.Add(signed, []byte{})
	f.Add([]byte("<repomd/>"), asc.Bytes())
	f.Add(signed, []byte("-----BEGIN PGP SIGNATURE-----\n\nxx\n-----END PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, xmlData, sig []byte) {
		var r *rpmmd.Repomd
		var err error
		alloc := limittest.Allocs(func() { r, err = rpmmd.VerifyRepomd(xmlData, sig, kr) })
		if max := uint64(16<<20 + 256*(len(xmlData)+len(sig))); alloc > max {
			t.Fatalf("allocated %d bytes for %d+%d bytes", alloc, len(xmlData), len(sig))
		}
		if err != nil {
			if r != nil {
				t.Fatal("a Repomd returned with an error")
			}
			if !errors.Is(err, rpmmd.ErrBadSignature) && !errors.Is(err, rpmmd.ErrUnknownKey) && !errors.Is(err, repoindex.ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "rpmmd: repomd.xml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if !bytes.Equal(xmlData, signed) {
			t.Fatalf("accepted repomd.xml that the key never signed: %q", xmlData)
		}
		if r == nil || r.SignerKeyID == "" || len(r.Data) != 2 {
			t.Fatalf("verified, but parsed %+v", r)
		}
	})
}
