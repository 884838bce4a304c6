package apt

import (
	"bytes"
	"errors"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gnupg runs the real gpg in a throw-away home directory.
type gnupg struct {
	t    *testing.T
	bin  string
	home string
}

func newGnuPG(t *testing.T) *gnupg {
	t.Helper()
	bin := testtool.Need(t, "gpg", "gpg")
	// A short home: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	g := &gnupg{t: t, bin: bin, home: home}
	t.Cleanup(func() {
		if conf, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(conf, "--kill", "all")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
			cmd.Run()
		}
		os.RemoveAll(home)
	})
	return g
}

func (g *gnupg) run(stdin []byte, args ...string) []byte {
	g.t.Helper()
	args = append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.Command(g.bin, args...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out.Bytes()
}

// genKey makes a signing key and returns its fingerprint.
func (g *gnupg) genKey(uid, algo string) string {
	g.run(nil, "--quick-gen-key", uid, algo, "sign", "1y")
	out := g.run(nil, "--with-colons", "--list-secret-keys", uid)
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "fpr:") {
			return strings.Split(l, ":")[9]
		}
	}
	g.t.Fatalf("no fingerprint for %s in:\n%s", uid, out)
	return ""
}

// The real gpg signs as reprepro and dak do (gpg --clearsign, gpg
// --detach-sign); we must verify what it makes, with the keyring exported
// the ways apt users install keys (binary .gpg, armored .asc).
func TestVerifyGnuPGSigned(t *testing.T) {
	g := newGnuPG(t)
	for _, algo := range []string{"rsa3072", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			uid := "Test Repository " + algo + " <repo-" + algo + "@example.org>"
			fpr := g.genKey(uid, algo)
			// After the key exists: like gpg, we refuse keys created "in
			// the future".
			now := time.Now().Add(time.Second)
			text := releaseText(now.Add(-time.Minute), now.Add(24*time.Hour))
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "repo.gpg"), g.run(nil, "--export", fpr), 0o644)
			os.WriteFile(filepath.Join(dir, "repo-armored.asc"), g.run(nil, "--armor", "--export", fpr), 0o644)
			for _, name := range []string{"repo.gpg", "repo-armored.asc"} {
				kr, err := LoadKeyring(filepath.Join(dir, name))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if kr.Len() != 1 || kr.KeyIDs()[0] != fpr {
					t.Fatalf("%s: keys %v, want [%s]", name, kr.KeyIDs(), fpr)
				}
				inRelease := g.run(text, "--local-user", fpr, "--digest-algo", "SHA512", "--clearsign")
				rel, err := VerifyInRelease(inRelease, kr, now)
				if err != nil {
					t.Fatalf("InRelease from gpg --clearsign: %v", err)
				}
				if rel.Signer != fpr+" "+uid || len(rel.Files) != 4 {
					t.Errorf("Signer %q, %d files", rel.Signer, len(rel.Files))
				}
				for _, armor := range [][]string{{"--armor"}, nil} {
					args := append(append([]string{"--local-user", fpr}, armor...), "--detach-sign")
					sig := g.run(text, args...)
					if _, err := VerifyRelease(text, sig, kr, now); err != nil {
						t.Errorf("Release.gpg from gpg %v: %v", args, err)
					}
					tampered := bytes.Replace(text, []byte("amd64 arm64"), []byte("amd64 arm65"), 1)
					if _, err := VerifyRelease(tampered, sig, kr, now); !errors.Is(err, ErrBadSignature) {
						t.Errorf("tampered Release: got %v, want ErrBadSignature", err)
					}
				}
			}
		})
	}
}
