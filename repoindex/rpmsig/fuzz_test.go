package rpmsig_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// FuzzLoadKeys feeds key data as urpmi media publish it (the medium's
// pubkey comes from the origin) to LoadKeys: it never panics, fails with
// no KeySet and an error saying where, allocates within a bound of the
// input, and a KeySet it returns holds at least one key.
func FuzzLoadKeys(f *testing.F) {
	var bin bytes.Buffer
	for _, algo := range []packet.PublicKeyAlgorithm{packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoRSA} {
		e, err := openpgp.NewEntity("fuzz", "", "fuzz@example.invalid", &packet.Config{Algorithm: algo, RSABits: 2048})
		if err != nil {
			f.Fatal(err)
		}
		e.Serialize(&bin)
	}
	var arm bytes.Buffer
	w, _ := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	w.Write(bin.Bytes())
	w.Close()
	f.Add(bin.Bytes())
	f.Add(arm.Bytes())
	f.Add(append(append([]byte("comment\n"), arm.Bytes()...), arm.Bytes()...))
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ks *rpmsig.KeySet
		var err error
		alloc := limittest.Allocs(func() { ks, err = rpmsig.LoadKeys(data) })
		if max := uint64(16<<20 + 256*len(data)); alloc > max {
			t.Fatalf("allocated %d bytes for %d bytes of key data", alloc, len(data))
		}
		if err != nil {
			if ks != nil {
				t.Fatal("a KeySet returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "rpmsig: key data #1: ") {
				t.Fatalf("error does not say which key data: %v", err)
			}
			return
		}
		if ks.Len() == 0 || len(ks.KeyIDs()) != ks.Len() || len(ks.Entities()) != ks.Len() {
			t.Fatalf("KeySet of %d keys, %d IDs, %d entities", ks.Len(), len(ks.KeyIDs()), len(ks.Entities()))
		}
	})
}
