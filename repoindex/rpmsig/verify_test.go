package rpmsig_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

var sentinels = []error{rpmsig.ErrMalformed, rpmsig.ErrUnsigned, rpmsig.ErrUnknownKey,
	rpmsig.ErrBadSignature, rpmsig.ErrPayloadDigest, rpmsig.ErrMismatch}

func mustKeys(t testing.TB, data ...[]byte) *rpmsig.KeySet {
	t.Helper()
	ks, err := rpmsig.LoadKeys(data...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func verifyFile(t *testing.T, path string, keys *rpmsig.KeySet) (*rpmsig.Info, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return rpmsig.VerifyRPM(f, keys)
}

// TestVerifyRPMRealPackages builds real signed rpms with rpmbuild and
// rpmsign, derives bad ones from them, and checks VerifyRPM's verdict and
// that rpmkeys --checksig agrees on each.
func TestVerifyRPMRealPackages(t *testing.T) {
	key := rpmrepo.NewKey(t, "")
	other := rpmrepo.NewKey(t, "")
	tr := rpmrepo.Build(t, rpmrepo.Options{
		Key:        key,
		NoRepodata: true,
		Packages: []rpmrepo.Package{
			{Name: "plain", Size: 5000, Seed: 1},
			{Name: "with-dash", Version: "2.0.1", Release: "0.rc1.2.mga9", Epoch: 3, Arch: "x86_64", Size: 300000, Seed: 2},
			{Name: "xzpayload", Size: 100000, Seed: 3, Payload: "w9.xzdio"},
			{Name: "zstdpayload", Size: 100000, Seed: 4, Payload: "w19.zstdio"},
			{Name: "empty", Size: 0, Seed: 5},
		},
	})
	dir := t.TempDir()
	good := tr.Package("with-dash-2.0.1-0.rc1.2.mga9.x86_64")
	derived := func(name string, mk func(src, dst string)) string {
		p := filepath.Join(dir, name)
		mk(good.File, p)
		return p
	}
	tampered := derived("tampered.rpm", func(s, d string) { rpmrepo.Tampered(t, s, d) })
	resigned := derived("resigned.rpm", func(s, d string) { rpmrepo.Resigned(t, s, d, other) })
	unsigned := derived("unsigned.rpm", func(s, d string) { rpmrepo.Unsigned(t, s, d) })
	truncated := derived("truncated.rpm", func(s, d string) {
		b, _ := os.ReadFile(s)
		os.WriteFile(d, b[:len(b)-100], 0o644)
	})
	appended := derived("appended.rpm", func(s, d string) {
		b, _ := os.ReadFile(s)
		os.WriteFile(d, append(b, "trailing"...), 0o644)
	})
	headerEdit := derived("header-edit.rpm", func(s, d string) {
		b, _ := os.ReadFile(s)
		off, err := rpmrepo.PayloadOffset(b)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.LastIndex(b[:off], []byte("pkgswarm test package with-dash"))
		if i < 0 {
			t.Fatal("summary not found in the main header")
		}
		b[i] = 'P' // same length, still a valid string: only the signature can tell
		os.WriteFile(d, b, 0o644)
	})
	notRPM := derived("not.rpm", func(s, d string) { os.WriteFile(d, []byte("<html>404</html>"), 0o644) })

	trusted := mustKeys(t, key.Armored)
	both := mustKeys(t, key.Armored, other.Armored)
	tests := []struct {
		name string
		file string
		keys *rpmsig.KeySet
		want error // nil: must verify
	}{
		{"plain", tr.Package("plain-1.0-1.mga9.noarch").File, trusted, nil},
		{"epoch and arch", good.File, trusted, nil},
		{"xz payload", tr.Package("xzpayload-1.0-1.mga9.noarch").File, trusted, nil},
		{"zstd payload", tr.Package("zstdpayload-1.0-1.mga9.noarch").File, trusted, nil},
		{"empty payload file", tr.Package("empty-1.0-1.mga9.noarch").File, trusted, nil},
		{"tampered payload", tampered, trusted, rpmsig.ErrPayloadDigest},
		{"truncated payload", truncated, trusted, rpmsig.ErrPayloadDigest},
		{"trailing bytes", appended, trusted, rpmsig.ErrPayloadDigest},
		{"edited header", headerEdit, trusted, rpmsig.ErrBadSignature},
		{"signed by other key", resigned, trusted, rpmsig.ErrUnknownKey},
		{"other key trusted too", resigned, both, nil},
		{"unsigned", unsigned, trusted, rpmsig.ErrUnsigned},
		{"unsigned, no keys", unsigned, nil, rpmsig.ErrUnsigned},
		{"no trusted keys", good.File, nil, rpmsig.ErrUnknownKey},
		{"not an rpm", notRPM, trusted, rpmsig.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := verifyFile(t, tc.file, tc.keys)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyRPM: %v", err)
				}
				if info.SignerKeyID == "" || len(info.PayloadSHA256) != 32 {
					t.Errorf("info lacks signer or payload digest: %+v", info)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRPM error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), filepath.Base(tc.file)) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}

	// rpm itself must agree on every file with a trusted-key verdict.
	t.Run("rpmkeys agrees", func(t *testing.T) {
		var files []string
		var ours []bool
		for _, tc := range tests {
			if tc.keys != trusted {
				continue
			}
			files = append(files, tc.file)
			ours = append(ours, tc.want == nil)
		}
		theirs, out := rpmrepo.CheckSig(t, []*rpmrepo.Key{key}, files...)
		for i := range files {
			if ours[i] != theirs[i] {
				t.Errorf("%s: VerifyRPM ok=%v, rpmkeys --checksig ok=%v:\n%s", filepath.Base(files[i]), ours[i], theirs[i], out[i])
			}
		}
	})
}

func TestVerifyRPMInfo(t *testing.T) {
	key := rpmrepo.NewKey(t, "")
	tr := rpmrepo.Build(t, rpmrepo.Options{Key: key, NoRepodata: true, Packages: []rpmrepo.Package{
		{Name: "lib64foo-devel", Version: "1.2", Release: "4.mga9", Epoch: 7, Arch: "x86_64", Size: 1234, Seed: 9},
	}})
	b := tr.Media[0].Packages[0]
	info, err := verifyFile(t, b.File, mustKeys(t, key.Armored))
	if err != nil {
		t.Fatal(err)
	}
	want := rpmsig.Info{
		NEVRA: "lib64foo-devel-1.2-4.mga9.x86_64", Name: "lib64foo-devel", Version: "1.2",
		Release: "4.mga9", Arch: "x86_64", Epoch: 7, SignerKeyID: strings.ToLower(key.KeyID), Size: b.Size,
	}
	got := *info
	got.PayloadSHA256 = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("info = %+v\nwant   %+v", got, want)
	}
	if hex.EncodeToString(info.PayloadSHA256) != strings.TrimSpace(b.PayloadSHA256) {
		t.Errorf("PayloadSHA256 = %x, rpm says %s", info.PayloadSHA256, b.PayloadSHA256)
	}

	// Verify through a plain reader gives the same answer.
	data, _ := os.ReadFile(b.File)
	info2, err := rpmsig.Verify(bytes.NewReader(data), "mem", mustKeys(t, key.Binary))
	if err != nil {
		t.Fatal(err)
	}
	if info2.NEVRA != info.NEVRA || info2.Size != info.Size {
		t.Errorf("Verify = %+v, VerifyRPM = %+v", info2, info)
	}
}

// TestKeyAlgorithms signs with each key type rpm 4.18 signs with (RSA lands
// in signature tag 268, DSA and EdDSA in 267; rpmsign refuses ECDSA) and
// checks that VerifyRPM and rpmkeys --checksig both accept the result.
func TestKeyAlgorithms(t *testing.T) {
	for _, algo := range []string{"rsa2048", "ed25519", "dsa2048"} {
		t.Run(algo, func(t *testing.T) {
			key := rpmrepo.NewKey(t, algo)
			p := rpmrepo.BuildRPM(t, rpmrepo.Package{Name: "algo", Size: 2000, Seed: 1})
			rpmrepo.Sign(t, key, p)
			_, err := verifyFile(t, p, mustKeys(t, key.Armored))
			theirs, out := rpmrepo.CheckSig(t, []*rpmrepo.Key{key}, p)
			if (err == nil) != theirs[0] {
				t.Fatalf("VerifyRPM: %v; rpmkeys --checksig ok=%v:\n%s", err, theirs[0], out[0])
			}
			if err != nil {
				t.Fatalf("both refuse an rpm signed with %s: %v\n%s", algo, err, out[0])
			}
		})
	}
}

func TestExpectFor(t *testing.T) {
	key := rpmrepo.NewKey(t, "")
	tr := rpmrepo.Build(t, rpmrepo.Options{Key: key, NoRepodata: true, Packages: []rpmrepo.Package{
		{Name: "exp", Size: 4000, Seed: 1},
	}})
	b := tr.Media[0].Packages[0]
	keys := mustKeys(t, key.Armored)
	tests := []struct {
		name  string
		nevra string
		size  int64
		want  error
	}{
		{"matches", b.NEVRA, b.Size, nil},
		{"other nevra", "exp-1.0-2.mga9.noarch", b.Size, rpmsig.ErrMismatch},
		{"other size", b.NEVRA, b.Size + 1, rpmsig.ErrMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := rpmsig.ExpectFor(keys, tc.nevra, tc.size)
			if e.SHA256 != nil || e.Size != tc.size {
				t.Errorf("expectation SHA256=%x Size=%d", e.SHA256, e.Size)
			}
			if e.Key != urpmi.NameKey([]string{key.KeyID}, tc.nevra, tc.size) {
				t.Errorf("Key %s is not the name key", e.Key)
			}
			f, err := os.Open(b.File)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Seek(17, 0); err != nil {
				t.Fatal(err)
			}
			err = e.Check(f)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if pos, _ := f.Seek(0, 1); pos != 17 {
				t.Errorf("Check moved the file offset to %d", pos)
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	k1 := rpmrepo.NewKey(t, "")
	k2 := rpmrepo.NewKey(t, "ed25519")
	tests := []struct {
		name    string
		data    [][]byte
		wantIDs []string
		wantErr bool
	}{
		{"armored", [][]byte{k1.Armored}, []string{k1.KeyID}, false},
		{"binary", [][]byte{k1.Binary}, []string{k1.KeyID}, false},
		{"two armored blocks in one file", [][]byte{append(append([]byte("comment\n"), k1.Armored...), k2.Armored...)}, []string{k1.KeyID, k2.KeyID}, false},
		{"binary keyring of two", [][]byte{append(append([]byte{}, k1.Binary...), k2.Binary...)}, []string{k1.KeyID, k2.KeyID}, false},
		{"duplicates collapse", [][]byte{k1.Armored, k1.Binary}, []string{k1.KeyID}, false},
		{"none", nil, nil, false},
		{"garbage", [][]byte{[]byte("not a key")}, nil, true},
		{"empty armor", [][]byte{[]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n")}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := rpmsig.LoadKeys(tc.data...)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("LoadKeys succeeded with %d keys", ks.Len())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, id := range tc.wantIDs {
				want = append(want, strings.ToLower(id))
			}
			got := ks.KeyIDs()
			if strings.Join(got, ",") != strings.Join(sortedCopy(want), ",") {
				t.Errorf("KeyIDs = %v, want %v", got, want)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func FuzzVerifyRPM(f *testing.F) {
	key := rpmrepo.NewKey(f, "")
	p := rpmrepo.BuildRPM(f, rpmrepo.Package{Name: "fuzz", Size: 64, Seed: 1})
	unsigned, _ := os.ReadFile(p)
	rpmrepo.Sign(f, key, p)
	signed, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	keys := mustKeys(f, key.Armored)
	f.Add(signed)
	f.Add(unsigned)
	f.Add(signed[:200])
	f.Add(signed[:96])
	f.Add([]byte{})
	f.Add([]byte{0xed, 0xab, 0xee, 0xdb})
	off, _ := rpmrepo.PayloadOffset(signed)
	f.Add(signed[:off])
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := rpmsig.Verify(bytes.NewReader(data), "fuzz.rpm", keys)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if info == nil || info.NEVRA == "" || info.SignerKeyID == "" || info.Size != int64(len(data)) {
			t.Fatalf("verified with incomplete info %+v", info)
		}
	})
}

// BenchmarkVerifyRPM verifies a 32 MiB signed rpm (incompressible payload).
func BenchmarkVerifyRPM(b *testing.B) {
	key := rpmrepo.NewKey(b, "")
	p := rpmrepo.BuildRPM(b, rpmrepo.Package{Name: "big", Size: 32 << 20, Seed: 1})
	rpmrepo.Sign(b, key, p)
	keys := mustKeys(b, key.Armored)
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := rpmsig.VerifyRPM(f, keys); err != nil {
			b.Fatal(err)
		}
	}
}
