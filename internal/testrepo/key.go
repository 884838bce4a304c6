package testrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gpgTimeout bounds every gpg invocation, so a wedged gpg-agent fails a
// test with a message instead of hanging it until the global test timeout.
const gpgTimeout = 2 * time.Minute

// maxHomeLen keeps gpg-agent's socket path (Home + "/S.gpg-agent.browser")
// under the 108-byte sun_path limit of Unix sockets.
const maxHomeLen = 80

// Key is an OpenPGP signing key living in its own GNUPGHOME. By default it
// is an Ed25519 key: Debian 12's gpgv and apt accept it (proved by the
// aptenv tests), and generating it takes milliseconds where RSA-3072 takes
// seconds. NewKeyAlgo makes RSA keys too.
type Key struct {
	// Home is the GNUPGHOME holding the secret key.
	Home string
	// Fingerprint is the primary key's fingerprint, 40 upper-case hex digits.
	Fingerprint string
	// KeyringPath is a binary (not armored) public keyring holding only this
	// key, named *.gpg, usable as apt's [signed-by=...] and as pkgswarm's
	// --keyring.
	KeyringPath string
	// ArmoredPath is the same public key, ASCII-armored (*.asc).
	ArmoredPath string

	ownHome bool // Home was made by us and is removed by Close
}

// NewKey makes a new Ed25519 signing key for a test. The key's gpg-agent
// is stopped and its files removed when the test ends. The test is skipped
// when gpg is not installed.
func NewKey(t testing.TB, name string) *Key {
	t.Helper()
	return NewKeyAlgo(t, name, "ed25519")
}

// NewKeyAlgo is NewKey with the key algorithm given as gpg --quick-gen-key
// names it: "ed25519" or "rsa3072" and "rsa4096" (what Debian's archive
// keys use; generating one takes a second or more).
func NewKeyAlgo(t testing.TB, name, algo string) *Key {
	t.Helper()
	RequireTools(t, "gpg", "gpgconf")
	k, err := NewKeyDirAlgo(t.TempDir(), name, algo)
	if err != nil {
		t.Fatalf("testrepo: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Logf("testrepo: %v", err)
		}
	})
	return k
}

// NewKeyDir makes a new signing key whose public keyrings are written to dir
// (created if missing) as <name>.gpg and <name>.asc. The GNUPGHOME is
// dir/gnupg when that path is short enough for gpg-agent's sockets, else a
// fresh directory under os.TempDir(). The caller must call Close to stop the
// key's gpg-agent.
func NewKeyDir(dir, name string) (*Key, error) { return NewKeyDirAlgo(dir, name, "ed25519") }

// NewKeyDirAlgo is NewKeyDir with the key algorithm of NewKeyAlgo.
func NewKeyDirAlgo(dir, name, algo string) (*Key, error) {
	switch algo {
	case "ed25519", "rsa2048", "rsa3072", "rsa4096":
	default:
		return nil, fmt.Errorf("make signing key %q: algorithm %q is not ed25519, rsa2048, rsa3072 or rsa4096", name, algo)
	}
	if name == "" || strings.ContainsAny(name, "/<>\n") {
		return nil, fmt.Errorf("make signing key: name %q must be non-empty and contain no '/', '<', '>' or newline", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make signing key %q: %w", name, err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("make signing key %q: %w", name, err)
	}
	k := &Key{}
	home := filepath.Join(dir, "gnupg")
	if len(home) <= maxHomeLen {
		if err := os.MkdirAll(home, 0o700); err != nil {
			return nil, fmt.Errorf("make signing key %q: %w", name, err)
		}
		k.ownHome = false
	} else {
		home, err = os.MkdirTemp("", "testrepo-gpg-")
		if err != nil {
			return nil, fmt.Errorf("make signing key %q: %w", name, err)
		}
		k.ownHome = true
	}
	k.Home = home
	uid := fmt.Sprintf("%s <%s@repo.example.invalid>", name, strings.ReplaceAll(name, " ", "-"))
	if _, err := k.gpg("--quick-gen-key", uid, algo, "sign", "never"); err != nil {
		k.Close()
		return nil, fmt.Errorf("make signing key %q: %w", name, err)
	}
	out, err := k.gpg("--with-colons", "--list-secret-keys")
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("make signing key %q: %w", name, err)
	}
	k.Fingerprint = firstFingerprint(out)
	if k.Fingerprint == "" {
		k.Close()
		return nil, fmt.Errorf("make signing key %q: gpg --list-secret-keys printed no fingerprint:\n%s", name, out)
	}
	k.KeyringPath = filepath.Join(dir, name+".gpg")
	k.ArmoredPath = filepath.Join(dir, name+".asc")
	if _, err := k.gpg("--yes", "--output", k.KeyringPath, "--export", k.Fingerprint); err != nil {
		k.Close()
		return nil, fmt.Errorf("export public key %s: %w", k.Fingerprint, err)
	}
	if _, err := k.gpg("--yes", "--armor", "--output", k.ArmoredPath, "--export", k.Fingerprint); err != nil {
		k.Close()
		return nil, fmt.Errorf("export public key %s: %w", k.Fingerprint, err)
	}
	return k, nil
}

// firstFingerprint returns the first "fpr" record of gpg --with-colons output.
func firstFingerprint(colons []byte) string {
	for line := range strings.SplitSeq(string(colons), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 9 && f[0] == "fpr" && len(f[9]) == 40 {
			return f[9]
		}
	}
	return ""
}

// ClearSign writes to out an OpenPGP clearsigned copy of in (an InRelease
// file when in is a Release file).
func (k *Key) ClearSign(in, out string) error {
	if _, err := k.gpg("--yes", "--digest-algo", "SHA256", "--local-user", k.Fingerprint,
		"--output", out, "--clearsign", in); err != nil {
		return fmt.Errorf("clearsign %s: %w", in, err)
	}
	return nil
}

// DetachSign writes to out an ASCII-armored detached signature of in (a
// Release.gpg file when in is a Release file).
func (k *Key) DetachSign(in, out string) error {
	if _, err := k.gpg("--yes", "--digest-algo", "SHA256", "--local-user", k.Fingerprint,
		"--armor", "--output", out, "--detach-sign", in); err != nil {
		return fmt.Errorf("detach-sign %s: %w", in, err)
	}
	return nil
}

// Close stops the key's gpg-agent and removes a GNUPGHOME that NewKeyDir
// placed under os.TempDir(). The key cannot sign afterwards. Calling Close
// again is harmless.
func (k *Key) Close() error {
	if k.Home == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), gpgTimeout)
	defer cancel()
	var errs []error
	cmd := exec.CommandContext(ctx, "gpgconf", "--homedir", k.Home, "--kill", "gpg-agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("stop gpg-agent of %s: %w: %s", k.Home, err, bytes.TrimSpace(out)))
	}
	if k.ownHome {
		if err := os.RemoveAll(k.Home); err != nil {
			errs = append(errs, err)
		}
		k.Home = ""
	}
	return errors.Join(errs...)
}

// gpg runs gpg non-interactively in the key's home and returns its stdout.
func (k *Key) gpg(args ...string) ([]byte, error) {
	if k.Home == "" {
		return nil, errors.New("gpg: key is closed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), gpgTimeout)
	defer cancel()
	full := append([]string{"--homedir", k.Home, "--batch", "--no-tty",
		"--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.CommandContext(ctx, "gpg", full...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "GNUPGHOME="+k.Home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gpg %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// RequireTools skips the test when any of the named programs is missing
// from PATH, naming the Debian package that provides it.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("testrepo: %s not found in PATH (install Debian package %s)", n, debianPackageOf(n))
		}
	}
}

func debianPackageOf(tool string) string {
	switch tool {
	case "gpg":
		return "gpg"
	case "gpgconf":
		return "gpgconf"
	case "gpgv":
		return "gpgv"
	case "dpkg-deb":
		return "dpkg"
	case "apt-get":
		return "apt"
	case "curl":
		return "curl"
	}
	return tool
}
