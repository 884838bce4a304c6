package apt

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestLoadKeyringDirectory(t *testing.T) {
	t.Parallel()
	a := newTestKey(t, "Key A", keyOpts{})
	b := newTestKey(t, "Key B", keyOpts{})
	c := newTestKey(t, "Key C", keyOpts{})
	dir := t.TempDir()
	writePublic(t, filepath.Join(dir, "a.gpg"), false, a)
	writePublic(t, filepath.Join(dir, "b.asc"), true, b)
	writePublic(t, filepath.Join(dir, "c.txt"), false, c) // not a keyring name: ignored, as apt does
	writePublic(t, filepath.Join(dir, "dup.gpg"), false, a, b)
	os.WriteFile(filepath.Join(dir, "broken.gpg"), []byte("not a key"), 0o644)
	os.WriteFile(filepath.Join(dir, "empty.gpg"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling.gpg"))

	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr.Len() != 2 {
		t.Errorf("Len = %d, want 2 (a and b, once each)", kr.Len())
	}
	ids := kr.KeyIDs()
	if !slices.Contains(ids, a.fingerprint()) || !slices.Contains(ids, b.fingerprint()) || slices.Contains(ids, c.fingerprint()) {
		t.Errorf("KeyIDs = %v", ids)
	}
	sk := kr.Skipped()
	if len(sk) != 1 || filepath.Base(sk[0].Path) != "broken.gpg" {
		t.Errorf("Skipped = %v, want broken.gpg only", sk)
	}
	for _, k := range kr.Keys() {
		if k.UserID == "" || k.Source == "" || k.Created.IsZero() {
			t.Errorf("incomplete KeyInfo %+v", k)
		}
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newTestKey(t, "Key A", keyOpts{})
	broken := filepath.Join(dir, "broken.gpg")
	os.WriteFile(broken, []byte("garbage"), 0o644)
	secret := filepath.Join(dir, "secret.gpg")
	var buf bytes.Buffer
	if err := key.e.SerializePrivate(&buf, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(secret, buf.Bytes(), 0o644)
	keybox := filepath.Join(dir, "pubring.kbx")
	os.WriteFile(keybox, append([]byte{0, 0, 0, 32, 1, 1, 0, 0}, "KBXf\x00\x00\x00\x00"...), 0o644)
	armoredNoKey := filepath.Join(dir, "nokey.asc")
	os.WriteFile(armoredNoKey, []byte("-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"), 0o644)

	tests := []struct {
		name string
		path string
		want string // substring of the error
	}{
		{"named-broken-file", broken, broken},
		{"secret-key", secret, "secret key"},
		{"keybox", keybox, "keybox"},
		{"armored-without-key-block", armoredNoKey, armoredNoKey},
		{"missing-named-path", filepath.Join(dir, "absent.gpg"), "absent.gpg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kr, err := LoadKeyring(tc.path)
			if err == nil {
				t.Fatalf("no error; loaded %d keys", kr.Len())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadKeyringMissingDefaultsSkipped(t *testing.T) {
	t.Parallel()
	// Whatever of the defaults this machine has must load; absent ones are
	// skipped. This is what `pkgswarm serve` does with no keyring flags.
	kr, err := LoadKeyring(DefaultKeyringPaths...)
	if err != nil {
		t.Fatalf("LoadKeyring(defaults): %v", err)
	}
	t.Logf("default keyrings: %d keys, %d files skipped", kr.Len(), len(kr.Skipped()))
	empty, err := LoadKeyring()
	if err != nil || empty.Len() != 0 {
		t.Errorf("LoadKeyring() = %d keys, %v", empty.Len(), err)
	}
}

// A key renewed in a newer file (longer expiry, newer self-signature) wins
// over the older copy, whatever the order of the files.
func TestLoadKeyringKeepsNewestCopy(t *testing.T) {
	t.Parallel()
	created := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	key := newTestKey(t, "Renewed Key", keyOpts{created: created, lifetime: 24 * time.Hour})
	dir := t.TempDir()
	writePublic(t, filepath.Join(dir, "b-old.gpg"), false, key)
	// Renew: a new self-signature without expiry.
	renewCfg := &packet.Config{Time: func() time.Time { return time.Now().Add(-time.Hour) }}
	for _, id := range key.e.Identities {
		id.SelfSignature.KeyLifetimeSecs = nil
		if err := id.SelfSignature.SignUserId(id.UserId.Id, key.e.PrimaryKey, key.e.PrivateKey, renewCfg); err != nil {
			t.Fatal(err)
		}
		id.Signatures = []*packet.Signature{id.SelfSignature}
	}
	writePublic(t, filepath.Join(dir, "a-new.gpg"), false, key)
	os.Rename(filepath.Join(dir, "b-old.gpg"), filepath.Join(dir, "z-old.gpg"))
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr.Len() != 1 {
		t.Fatalf("Len = %d", kr.Len())
	}
	if k := kr.Keys()[0]; !k.Expires.IsZero() || filepath.Base(k.Source) != "a-new.gpg" {
		t.Errorf("kept %+v, want the renewed copy without expiry", k)
	}
	now := time.Now()
	if _, err := VerifyInRelease(clearsignWith(t, releaseText(now, time.Time{}), signOpts{}, key), kr, now); err != nil {
		t.Errorf("signature by the renewed key: %v", err)
	}
}

// Debian's archive keyring holds RSA and Ed25519 keys; every one must load
// (golang.org/x/crypto/openpgp silently drops the Ed25519 ones).
func TestDebianArchiveKeyring(t *testing.T) {
	t.Parallel()
	const path = "/usr/share/keyrings/debian-archive-keyring.gpg"
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s absent (package debian-archive-keyring not installed)", path)
	}
	kr, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := countPrimaryKeys(t, data)
	if kr.Len() != want || want == 0 {
		t.Errorf("loaded %d keys, the file holds %d primary keys", kr.Len(), want)
	}
	algos := map[packet.PublicKeyAlgorithm]int{}
	for _, e := range kr.entities {
		algos[e.PrimaryKey.PubKeyAlgo]++
	}
	t.Logf("%d keys by algorithm: %v", kr.Len(), algos)
	if algos[packet.PubKeyAlgoEdDSA] == 0 {
		t.Logf("no Ed25519 key in this version of %s", path)
	}
	// If gpg is here, it is the oracle for the fingerprints.
	if gpg, err := exec.LookPath("gpg"); err == nil {
		out, err := exec.Command(gpg, "--batch", "--no-default-keyring", "--homedir", t.TempDir(), "--show-keys", "--with-colons", path).Output()
		if err != nil {
			t.Fatalf("gpg --show-keys: %v", err)
		}
		var fprs []string
		eddsa := 0
		inPub := false // the first fpr: after pub: is the primary key's
		for l := range strings.SplitSeq(string(out), "\n") {
			switch {
			case strings.HasPrefix(l, "pub:"):
				inPub = true
				if strings.Split(l, ":")[3] == "22" { // EdDSA
					eddsa++
				}
			case inPub && strings.HasPrefix(l, "fpr:"):
				fprs = append(fprs, strings.Split(l, ":")[9])
				inPub = false
			}
		}
		got := kr.KeyIDs()
		slices.Sort(got)
		slices.Sort(fprs)
		if !slices.Equal(got, fprs) {
			t.Errorf("fingerprints differ from gpg's:\n got %v\nwant %v", got, fprs)
		}
		if algos[packet.PubKeyAlgoEdDSA] != eddsa {
			t.Errorf("loaded %d Ed25519 keys, gpg sees %d", algos[packet.PubKeyAlgoEdDSA], eddsa)
		}
	}
}

// countPrimaryKeys counts public-key packets (tag 6) in a binary keyring.
func countPrimaryKeys(t *testing.T, data []byte) int {
	t.Helper()
	n := 0
	for off := 0; off < len(data); {
		b0 := data[off]
		var tag, hdr, length int
		if b0&0x40 != 0 {
			tag = int(b0 & 0x3f)
			o1 := int(data[off+1])
			switch {
			case o1 < 192:
				hdr, length = 2, o1
			case o1 < 224:
				hdr, length = 3, (o1-192)<<8+int(data[off+2])+192
			case o1 == 255:
				hdr, length = 6, int(data[off+2])<<24|int(data[off+3])<<16|int(data[off+4])<<8|int(data[off+5])
			default:
				t.Fatalf("partial length in a keyring at byte %d", off)
			}
		} else {
			tag = int(b0>>2) & 0xf
			switch b0 & 3 {
			case 0:
				hdr, length = 2, int(data[off+1])
			case 1:
				hdr, length = 3, int(data[off+1])<<8|int(data[off+2])
			case 2:
				hdr, length = 5, int(data[off+1])<<24|int(data[off+2])<<16|int(data[off+3])<<8|int(data[off+4])
			default:
				t.Fatalf("indeterminate length in a keyring at byte %d", off)
			}
		}
		if tag == 6 {
			n++
		}
		off += hdr + length
	}
	return n
}

// A whole directory of Debian's keyrings (several files holding the same
// keys, and the removed keys) loads without error.
func TestDebianKeyringDirectory(t *testing.T) {
	t.Parallel()
	const dir = "/usr/share/keyrings"
	if _, err := os.Stat(filepath.Join(dir, "debian-archive-keyring.gpg")); err != nil {
		t.Skipf("no Debian keyrings in %s: %v", dir, err)
	}
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range kr.Skipped() {
		if strings.HasPrefix(filepath.Base(s.Path), "debian-") {
			t.Errorf("Debian keyring skipped: %s: %v", s.Path, s.Err)
		}
	}
	if kr.Len() == 0 {
		t.Error("no keys")
	}
}

var _ openpgp.KeyRing = signingKeyring{}
