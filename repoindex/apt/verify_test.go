package apt

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestVerifyInRelease(t *testing.T) {
	t.Parallel()
	now := time.Now()
	good := newTestKey(t, "Repo Key", keyOpts{})
	other := newTestKey(t, "Other Key", keyOpts{})
	// Made 10 days ago, valid for 2 days: expired 8 days ago.
	expiredKey := newTestKey(t, "Expired Key", keyOpts{created: now.Add(-240 * time.Hour).Truncate(time.Second), lifetime: 48 * time.Hour})
	revoked := newTestKey(t, "Revoked Key", keyOpts{})
	if err := revoked.e.RevokeKey(packet.NoReason, "test", nil); err != nil {
		t.Fatal(err)
	}
	kr := publicKeyring(t, good, expiredKey, revoked)

	text := releaseText(now.Add(-time.Hour), now.Add(7*24*time.Hour))
	signed := clearsignWith(t, text, signOpts{}, good)
	tampered := bytes.Replace(signed, []byte("Suite: stable"), []byte("Suite: stabla"), 1)
	if bytes.Equal(tampered, signed) {
		t.Fatal("tampering did not change the data")
	}
	stale := clearsignWith(t, releaseText(now.Add(-10*24*time.Hour), now.Add(-time.Hour)), signOpts{}, good)
	pastSig := signOpts{at: now.Add(-200 * time.Hour).Truncate(time.Second)} // while expiredKey was valid

	tests := []struct {
		name    string
		data    []byte
		kr      *Keyring
		wantErr []error // all must match; nil: success
		signer  *testKey
	}{
		{name: "good", data: signed, kr: kr, signer: good},
		{name: "tampered", data: tampered, kr: kr, wantErr: []error{ErrBadSignature}},
		{name: "unknown-key", data: clearsignWith(t, text, signOpts{}, other), kr: kr, wantErr: []error{ErrUnknownKey}},
		{name: "empty-keyring", data: signed, kr: &Keyring{}, wantErr: []error{ErrUnknownKey}},
		{name: "nil-keyring", data: signed, kr: nil, wantErr: []error{ErrUnknownKey}},
		{name: "valid-until-passed", data: stale, kr: kr, wantErr: []error{ErrExpired}},
		{name: "unsigned", data: text, kr: kr, wantErr: []error{ErrBadSignature}},
		{name: "empty", data: nil, kr: kr, wantErr: []error{ErrBadSignature}},
		{name: "unknown-and-good", data: clearsignWith(t, text, signOpts{}, other, good), kr: kr, signer: good},
		{name: "good-and-unknown", data: clearsignWith(t, text, signOpts{}, good, other), kr: kr, signer: good},
		{name: "expired-key-only", data: clearsignWith(t, text, pastSig, expiredKey), kr: kr, wantErr: []error{ErrBadSignature, ErrKeyExpired}},
		{name: "expired-key-and-good", data: clearsignWith(t, text, pastSig, expiredKey, good), kr: kr, signer: good},
		{name: "signature-expired", data: clearsignWith(t, text, signOpts{at: now.Add(-48 * time.Hour).Truncate(time.Second), lifetime: time.Hour}, good), kr: kr, wantErr: []error{ErrBadSignature, ErrKeyExpired}},
		{name: "revoked-key", data: clearsignWith(t, text, signOpts{}, revoked), kr: kr, wantErr: []error{ErrBadSignature, ErrKeyRevoked}},
		{name: "signed-in-the-future", data: clearsignWith(t, text, signOpts{at: now.Add(10 * time.Minute).Truncate(time.Second)}, good), kr: kr, signer: good},
		{name: "two-messages", data: append(bytes.Clone(signed), signed...), kr: kr, wantErr: []error{ErrBadSignature}},
		{name: "signature-stripped", data: stripSignature(signed), kr: kr, wantErr: []error{ErrBadSignature}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rel, err := VerifyInRelease(tc.data, tc.kr, now)
			if tc.wantErr != nil {
				if rel != nil {
					t.Errorf("got a Release with error %v", err)
				}
				for _, want := range tc.wantErr {
					if !errors.Is(err, want) {
						t.Errorf("err = %v; want errors.Is %v", err, want)
					}
				}
				for _, other := range []error{ErrUnknownKey, ErrBadSignature, ErrExpired} {
					if !contains(tc.wantErr, other) && errors.Is(err, other) {
						t.Errorf("err = %v also matches %v", err, other)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyInRelease: %v", err)
			}
			if rel.Suite != "stable" || rel.Codename != "bookworm" || len(rel.Files) != 4 {
				t.Errorf("parsed %+v", rel)
			}
			if want := tc.signer.fingerprint() + " Repo Key (test) <repo.key@example.org>"; rel.Signer != want {
				t.Errorf("Signer = %q, want %q", rel.Signer, want)
			}
		})
	}
}

func contains(errs []error, e error) bool {
	for _, x := range errs {
		if x == e {
			return true
		}
	}
	return false
}

// stripSignature keeps the clearsigned text and armor lines but empties the
// signature block.
func stripSignature(in []byte) []byte {
	i := bytes.Index(in, []byte("-----BEGIN PGP SIGNATURE-----"))
	return append(in[:i:i], "-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"...)
}

// Only the signed text counts: fields before the armor header or after the
// signature never reach the Release.
func TestVerifyInReleaseIgnoresUnsignedText(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "Repo Key", keyOpts{})
	kr := publicKeyring(t, key)
	now := time.Now()
	signed := clearsignWith(t, releaseText(now.Add(-time.Hour), time.Time{}), signOpts{}, key)
	evil := "Origin: Evil\nSHA256:\n 0000000000000000000000000000000000000000000000000000000000000000 1 main/evil\n\n"
	data := append([]byte(evil), signed...)
	data = append(data, "\n"+evil...)
	rel, err := VerifyInRelease(data, kr, now)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Origin != "Test" {
		t.Errorf("Origin = %q, want the signed value", rel.Origin)
	}
	if _, ok := rel.Files["main/evil"]; ok {
		t.Error("an unsigned file entry reached the Release")
	}
}

// Dash-escaped lines ("- -----BEGIN...") are unescaped before parsing and
// count as signed.
func TestVerifyInReleaseDashEscaped(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "Repo Key", keyOpts{})
	kr := publicKeyring(t, key)
	now := time.Now()
	text := append(releaseText(now.Add(-time.Hour), time.Time{}), "Description2: x\n"...)
	text = bytes.Replace(text, []byte("Description: test release\n"), []byte("Description: test release\n -- dashes\n"), 1)
	rel, err := VerifyInRelease(clearsignWith(t, text, signOpts{}, key), kr, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Files) != 4 {
		t.Errorf("%d files", len(rel.Files))
	}
}

func TestVerifyRelease(t *testing.T) {
	t.Parallel()
	now := time.Now()
	key := newTestKey(t, "Repo Key", keyOpts{rsa: true})
	other := newTestKey(t, "Other Key", keyOpts{})
	kr := publicKeyring(t, key)
	text := releaseText(now.Add(-time.Hour), now.Add(time.Hour))
	tests := []struct {
		name    string
		release []byte
		sig     []byte
		want    error
	}{
		{"armored", text, detachSign(t, text, true, signOpts{}, key), nil},
		{"binary", text, detachSign(t, text, false, signOpts{}, key), nil},
		{"tampered", append(bytes.Clone(text), "Extra: x\n"...), detachSign(t, text, true, signOpts{}, key), ErrBadSignature},
		{"signature-of-other-data", text, detachSign(t, []byte("other"), false, signOpts{}, key), ErrBadSignature},
		{"unknown-key", text, detachSign(t, text, true, signOpts{}, other), ErrUnknownKey},
		{"empty-signature", text, nil, ErrBadSignature},
		{"garbage-signature", text, []byte("not a signature at all"), ErrBadSignature},
		{"public-key-as-signature", text, serializePublic(t, key), ErrBadSignature},
		{"armored-wrong-type", text, armorBytes(t, openpgp.PublicKeyType, serializePublic(t, key)), ErrBadSignature},
		{"same-signature-twice", text, bytes.Repeat(detachSign(t, text, false, signOpts{}, key), 2), nil},
		{"too-many-signatures", text, bytes.Repeat(detachSign(t, text, false, signOpts{}, key), maxSignatures+1), ErrBadSignature},
		{"clearsigned-as-release", clearsignWith(t, text, signOpts{}, key), detachSign(t, text, true, signOpts{}, key), ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rel, err := VerifyRelease(tc.release, tc.sig, kr, now)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || rel != nil {
					t.Fatalf("got %v, %v; want %v", rel, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(rel.Signer, key.fingerprint()+" ") {
				t.Errorf("Signer = %q", rel.Signer)
			}
			if !rel.ValidUntil.After(now) || rel.Date.After(now) {
				t.Errorf("dates %v %v", rel.Date, rel.ValidUntil)
			}
		})
	}
}

func serializePublic(t testing.TB, k *testKey) []byte {
	var buf bytes.Buffer
	if err := k.e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestErrorMessagesSayWhatToDo(t *testing.T) {
	t.Parallel()
	now := time.Now()
	key := newTestKey(t, "Repo Key", keyOpts{})
	other := newTestKey(t, "Other Key", keyOpts{})
	kr := publicKeyring(t, key)
	_, err := VerifyInRelease(clearsignWith(t, releaseText(now, time.Time{}), signOpts{}, other), kr, now)
	if err == nil || !strings.Contains(err.Error(), other.fingerprint()) || !strings.Contains(err.Error(), "keyring") {
		t.Errorf("unknown key error should name the key and the remedy: %v", err)
	}
	_, err = VerifyInRelease(clearsignWith(t, releaseText(now.Add(-48*time.Hour), now.Add(-24*time.Hour)), signOpts{}, key), kr, now)
	if err == nil || !strings.Contains(err.Error(), "suite stable") || !strings.Contains(err.Error(), "Valid-Until") {
		t.Errorf("expiry error should name the suite and the field: %v", err)
	}
}

func TestSplitPackets(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "Repo Key", keyOpts{})
	one := detachSign(t, []byte("x"), false, signOpts{}, key)
	tests := []struct {
		name    string
		data    []byte
		n       int
		wantErr bool
	}{
		{"one", one, 1, false},
		{"two", append(bytes.Clone(one), one...), 2, false},
		{"empty", nil, 0, false},
		{"truncated", one[:len(one)-1], 0, true},
		{"header-only", one[:1], 0, true},
		{"not-a-header", []byte{0x00, 0x01}, 0, true},
		{"public-key", serializePublic(t, key), 0, true},
		{"old-format-1byte", []byte{0x88, 0x01, 0x04}, 1, false},      // tag 2, length 1
		{"old-format-indeterminate", []byte{0x8b, 1, 2, 3}, 1, false}, // tag 2, to the end
		{"new-format-partial", []byte{0xc2, 0xe1, 0x00}, 0, true},
		{"new-format-5byte", []byte{0xc2, 0xff, 0, 0, 0, 1, 9}, 1, false},
		{"new-format-5byte-huge", []byte{0xc2, 0xff, 0xff, 0xff, 0xff, 0xff, 9}, 0, true},
		{"marker-dropped", append([]byte{0xca, 0x03, 'P', 'G', 'P'}, one...), 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := splitPackets(tc.data)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if len(got) != tc.n {
				t.Errorf("got %d packets, want %d", len(got), tc.n)
			}
		})
	}
}
