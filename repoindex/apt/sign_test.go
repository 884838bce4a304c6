package apt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// testKey is a signing key made for a test, with its creation time.
type testKey struct {
	e       *openpgp.Entity
	created time.Time
}

type keyOpts struct {
	created  time.Time     // zero: now - 1h
	lifetime time.Duration // zero: no expiry
	rsa      bool          // RSA 2048 instead of Ed25519
}

func newTestKey(t testing.TB, name string, o keyOpts) *testKey {
	t.Helper()
	if o.created.IsZero() {
		o.created = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return o.created }}
	if o.rsa {
		cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 2048
	}
	if o.lifetime > 0 {
		cfg.KeyLifetimeSecs = uint32(o.lifetime / time.Second)
	}
	e, err := openpgp.NewEntity(name, "test", strings.ToLower(strings.ReplaceAll(name, " ", "."))+"@example.org", cfg)
	if err != nil {
		t.Fatalf("generating key %s: %v", name, err)
	}
	return &testKey{e: e, created: o.created}
}

func (k *testKey) fingerprint() string { return fmt.Sprintf("%X", k.e.PrimaryKey.Fingerprint) }

// publicKeyring writes the public halves of keys to a binary keyring file
// in a temporary directory and loads it.
func publicKeyring(t testing.TB, keys ...*testKey) *Keyring {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trusted.gpg")
	writePublic(t, p, false, keys...)
	kr, err := LoadKeyring(p)
	if err != nil {
		t.Fatalf("LoadKeyring: %v", err)
	}
	return kr
}

func writePublic(t testing.TB, path string, armored bool, keys ...*testKey) {
	t.Helper()
	var buf bytes.Buffer
	for _, k := range keys {
		if err := k.e.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
	}
	data := buf.Bytes()
	if armored {
		data = armorBytes(t, openpgp.PublicKeyType, data)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signOpts tunes a signature.
type signOpts struct {
	at       time.Time     // signature creation time; zero: now - 1m
	lifetime time.Duration // signature expiry; zero: none
}

func (o signOpts) config() *packet.Config {
	at := o.at
	if at.IsZero() {
		at = time.Now().Add(-time.Minute).Truncate(time.Second)
	}
	cfg := &packet.Config{Time: func() time.Time { return at }}
	if o.lifetime > 0 {
		cfg.SigLifetimeSecs = uint32(o.lifetime / time.Second)
	}
	return cfg
}

// clearsignWith makes an InRelease of text signed by every key.
func clearsignWith(t testing.TB, text []byte, o signOpts, keys ...*testKey) []byte {
	t.Helper()
	var privs []*packet.PrivateKey
	for _, k := range keys {
		privs = append(privs, k.e.PrivateKey)
	}
	var out bytes.Buffer
	w, err := clearsign.EncodeMulti(&out, privs, o.config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(text); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// detachSign makes a Release.gpg for text.
func detachSign(t testing.TB, text []byte, armored bool, o signOpts, k *testKey) []byte {
	t.Helper()
	var out bytes.Buffer
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&out, k.e, bytes.NewReader(text), o.config())
	} else {
		err = openpgp.DetachSign(&out, k.e, bytes.NewReader(text), o.config())
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// releaseText builds a Release listing a few indexes with real digests.
func releaseText(date, validUntil time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Origin: Test\nLabel: Test\nSuite: stable\nVersion: 12.8\nCodename: bookworm\n")
	fmt.Fprintf(&b, "Date: %s\n", date.UTC().Format(time.RFC1123))
	if !validUntil.IsZero() {
		fmt.Fprintf(&b, "Valid-Until: %s\n", validUntil.UTC().Format(time.RFC1123))
	}
	b.WriteString("Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main contrib\nDescription: test release\n")
	b.WriteString("MD5Sum:\n d41d8cd98f00b204e9800998ecf8427e 0 main/binary-amd64/Packages\nSHA256:\n")
	for _, f := range []struct{ path, content string }{
		{"main/binary-amd64/Packages", "Package: a\n"},
		{"main/binary-amd64/Packages.gz", "gz bytes"},
		{"main/source/Sources.xz", "xz bytes"},
		{"main/i18n/Translation-en", ""},
	} {
		sum := sha256.Sum256([]byte(f.content))
		fmt.Fprintf(&b, " %s %8d %s\n", hex.EncodeToString(sum[:]), len(f.content), f.path)
	}
	return []byte(b.String())
}

func armorBytes(t testing.TB, blockType string, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := armor.Encode(&out, blockType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
