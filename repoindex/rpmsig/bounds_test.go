package rpmsig

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// claimingRPM returns the start of an rpm whose main header claims dl bytes
// of data; the caller supplies the data (or not).
func claimingRPM(dl uint32) []byte {
	var b bytes.Buffer
	lead := make([]byte, leadSize)
	binary.BigEndian.PutUint32(lead, leadMagic)
	b.Write(lead)
	// Signature header: one BIN tag of 8 bytes (already a multiple of 8).
	binary.Write(&b, binary.BigEndian, []uint32{headerMagic, 0, 1, 8, 1000, typeBin, 0, 8})
	b.Write(make([]byte, 8))
	// Main header: one BIN tag over all of its data.
	binary.Write(&b, binary.BigEndian, []uint32{headerMagic, 0, 1, dl, 1000, typeBin, 0, dl})
	return b.Bytes()
}

// TestConcurrentHugeHeaders is the regression test of issue 11's rpm
// headers: four rpms verified at once, whose main headers hold 200 MiB
// each (rpm's own limit is 256 MiB; four took a node to 1.6 GB), are
// refused before their headers are read, with errors wrapping ErrMalformed
// and repoindex.ErrTooLarge, while the heap grows by less than 16 MiB.
// Before the bound, each read its header whole (the test's readers stop
// that at the budget).
func TestConcurrentHugeHeaders(t *testing.T) {
	const dl = 200 << 20
	m := limittest.Start(16 << 20)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := io.MultiReader(bytes.NewReader(claimingRPM(dl)), io.LimitReader(zeros{}, dl+1000))
			_, errs[i] = Verify(m.Reader(r), "huge.rpm", nil)
		}()
	}
	wg.Wait()
	m.Check(t, "four rpms with 200 MiB headers")
	for i, err := range errs {
		if !errors.Is(err, repoindex.ErrTooLarge) || !errors.Is(err, ErrMalformed) {
			t.Errorf("rpm %d: %v, want an error wrapping ErrMalformed and repoindex.ErrTooLarge", i, err)
		}
	}
	t.Log(errs[0])
}

// TestShortInputLyingHeader: a header claiming the most it may, on a short
// input, costs little memory.
func TestShortInputLyingHeader(t *testing.T) {
	m := limittest.Start(8 << 20)
	_, err := Verify(bytes.NewReader(claimingRPM(30<<20)), "lying.rpm", nil)
	m.Check(t, "a 30 MiB header claimed by a 250-byte file")
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Verify: %v, want ErrMalformed and io.ErrUnexpectedEOF", err)
	}
}

// bigHeaderRPM returns an rpm signed by a new key (and that key) whose main
// header carries pad more bytes.
func bigHeaderRPM(t *testing.T, pad int) ([]byte, *KeySet) {
	t.Helper()
	ent, keys := craftedKey(t)
	src, err := os.ReadFile(rpmrepo.BuildRPM(t, rpmrepo.Package{Name: "bighdr", Size: 3000, Seed: 3}))
	if err != nil {
		t.Fatal(err)
	}
	p := splitRPM(t, src)
	main := encodeHeader(p.main, nil, []blob{{20000, typeBin, make([]byte, pad)}})
	return p.join(encodeHeader(p.sig, nil, []blob{{sigTagRSA, typeBin, v4Sig(t, ent, main)}}), main), keys
}

func craftedKey(t *testing.T) (*openpgp.Entity, *KeySet) {
	t.Helper()
	ent, err := openpgp.NewEntity("bounds", "", "bounds@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048})
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
	return ent, keys
}
