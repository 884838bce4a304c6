package apt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/pkgswarm/pkgswarm/repoindex/internal/limittest"
)

func FuzzParseRelease(f *testing.F) {
	for _, p := range []string{"testdata/bookworm-updates.release", "testdata/security-style.release", "testdata/flat.release"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("SHA256:\n " + testSum + " 0 main/a\n"))
	f.Add([]byte("Date: Sat, 09 Nov 2024 10:29:12 UTC\nSHA256:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rel, err := ParseRelease(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "release: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		for p, fs := range rel.Files {
			if _, err := cleanRelPath(p); err != nil || len(fs.SHA256) != 32 || fs.Size < 0 {
				t.Fatalf("accepted entry %q %+v", p, fs)
			}
			if got, ok := rel.Lookup(p); !ok || got.Size != fs.Size {
				t.Fatalf("Lookup(%q) after parse failed", p)
			}
		}
	})
}

func FuzzVerifyInRelease(f *testing.F) {
	key := newTestKey(f, "Fuzz Key", keyOpts{})
	other := newTestKey(f, "Other Key", keyOpts{})
	kr := publicKeyring(f, key)
	now := time.Now()
	text := releaseText(now.Add(-time.Hour), now.Add(time.Hour))
	f.Add(clearsignWith(f, text, signOpts{}, key))
	f.Add(clearsignWith(f, text, signOpts{}, other, key))
	f.Add(clearsignWith(f, []byte("Suite: x\n"), signOpts{}, key))
	f.Add(text)
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nx\n-----BEGIN PGP SIGNATURE-----\n\nwsAA\n-----END PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rel, err := VerifyInRelease(data, kr, now)
		if err == nil {
			if rel == nil || !strings.HasPrefix(rel.Signer, key.fingerprint()) {
				t.Fatalf("accepted without the trusted signer: %+v", rel)
			}
			return
		}
		if rel != nil {
			t.Fatal("a Release returned with an error")
		}
		if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrExpired) &&
			!strings.Contains(err.Error(), "release: ") {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

func FuzzVerifyRelease(f *testing.F) {
	key := newTestKey(f, "Fuzz Key", keyOpts{})
	kr := publicKeyring(f, key)
	now := time.Now()
	text := releaseText(now.Add(-time.Hour), time.Time{})
	f.Add(text, detachSign(f, text, true, signOpts{}, key))
	f.Add(text, detachSign(f, text, false, signOpts{}, key))
	f.Fuzz(func(t *testing.T, release, sig []byte) {
		rel, err := VerifyRelease(release, sig, kr, now)
		if err == nil {
			if !bytes.Equal(release, text) {
				// Only a signature by the key over these exact bytes may
				// pass; the fuzzer cannot forge one.
				t.Fatalf("accepted a Release that was never signed")
			}
			return
		}
		if rel != nil {
			t.Fatal("a Release returned with an error")
		}
	})
}

func FuzzParsePackages(f *testing.F) {
	data, err := os.ReadFile("testdata/Packages")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Package: a\nFilename: ./a.deb\nSize: 1\nSHA256: " + testSum + "\n"))
	f.Add([]byte("Package: a\r\nFilename: pool/../a.deb\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := ParsePackages(bytes.NewReader(data), func(p *Package) error {
			if _, err := cleanRelPath(p.Filename); err != nil || p.Filename[0] == '/' || len(p.SHA256) != 32 || p.Size < 0 || p.Name == "" {
				t.Fatalf("accepted %+v", p)
			}
			for seg := range strings.SplitSeq(p.Filename, "/") {
				if seg == ".." {
					t.Fatalf("accepted %q", p.Filename)
				}
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "Packages: ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

func FuzzParseSources(f *testing.F) {
	data, err := os.ReadFile("testdata/Sources")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Package: a\nDirectory: pool/a\nChecksums-Sha256:\n " + testSum + " 1 a.dsc\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := ParseSources(bytes.NewReader(data), func(dir string, sf SourceFile) error {
			if _, err := cleanRelPath(dir); err != nil || strings.Contains(sf.Name, "/") || sf.Name == ".." || len(sf.SHA256) != 32 || sf.Size < 0 {
				t.Fatalf("accepted %q %+v", dir, sf)
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "Sources: ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

func FuzzIsIndexPath(f *testing.F) {
	f.Add("main/binary-amd64/Packages.xz")
	f.Add("main/binary-amd64/by-hash/SHA256/" + testSum)
	f.Add("../InRelease")
	f.Fuzz(func(t *testing.T, p string) {
		kind, ok := IsIndexPath(p)
		if ok && (kind < IndexPackages || kind > IndexOther) {
			t.Fatalf("IsIndexPath(%q) = %v, true", p, kind)
		}
		if ok {
			for seg := range strings.SplitSeq(p, "/") {
				if seg == ".." {
					t.Fatalf("IsIndexPath(%q) accepted a .. path", p)
				}
			}
		}
	})
}

// FuzzLoadKeyring feeds keyring file contents (binary, armored, anything)
// to what LoadKeyring does with each file. A file that fails adds no key;
// one that loads holds only public keys; allocation stays bounded by the
// input; every loaded key can be asked to check a signature.
func FuzzLoadKeyring(f *testing.F) {
	key := newTestKey(f, "Fuzz Key", keyOpts{})
	rsa := newTestKey(f, "Fuzz RSA Key", keyOpts{rsa: true})
	var pub, secret bytes.Buffer
	key.e.Serialize(&pub)
	rsa.e.Serialize(&pub)
	key.e.SerializePrivate(&secret, nil)
	f.Add(pub.Bytes())
	f.Add(armorBytes(f, openpgp.PublicKeyType, pub.Bytes()))
	f.Add(secret.Bytes())
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add(append(make([]byte, 8), "KBXf"...))
	now := time.Now()
	text := releaseText(now.Add(-time.Hour), time.Time{})
	sig := detachSign(f, text, false, signOpts{}, key)
	f.Fuzz(func(t *testing.T, data []byte) {
		kr := &Keyring{}
		var err error
		alloc := limittest.Allocs(func() { err = kr.addData("fuzz.gpg", data, map[string]int{}) })
		if max := uint64(16<<20 + 256*len(data)); alloc > max {
			t.Fatalf("allocated %d bytes for a %d-byte keyring", alloc, len(data))
		}
		if err != nil {
			if kr.Len() != 0 {
				t.Fatalf("a failed file added %d keys", kr.Len())
			}
			if !strings.Contains(err.Error(), "fuzz.gpg") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i, e := range kr.entities {
			if e.PrivateKey != nil {
				t.Fatal("a secret key was loaded")
			}
			if kr.keys[i].Fingerprint != fmt.Sprintf("%X", e.PrimaryKey.Fingerprint) {
				t.Fatalf("key info %+v does not describe key %X", kr.keys[i], e.PrimaryKey.Fingerprint)
			}
		}
		if _, _, err := verifySignatures(text, sig, kr, now); err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("verifying with the loaded keys: unclassified error %v", err)
		}
	})
}
