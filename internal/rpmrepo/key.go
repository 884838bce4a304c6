package rpmrepo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// Key is a throw-away OpenPGP signing key held in its own GNUPGHOME.
type Key struct {
	// Home is the GNUPGHOME holding the secret key. It is removed, and its
	// gpg-agent stopped, when the test that made the key ends.
	Home string
	// UID is the key's user ID, e.g. "pkgswarm test 1 <test1@example.invalid>".
	UID string
	// Algo is the gpg algorithm name the key was made with ("rsa2048", "ed25519").
	Algo string
	// KeyID is the 16 hex digit long key ID of the primary key, upper case as
	// gpg prints it.
	KeyID string
	// Fingerprint is the primary key's fingerprint in upper-case hex.
	Fingerprint string
	// Armored is the ASCII-armored public key, the format of urpmi's pubkey
	// file and of rpm --import.
	Armored []byte
	// Binary is the same public key without armor.
	Binary []byte
}

var keySerial atomic.Int64

// NewKey makes a signing key with no passphrase. algo is a gpg algorithm name
// as --quick-gen-key takes it; "" means "rsa2048".
func NewKey(t testing.TB, algo string) *Key {
	t.Helper()
	gpg := need(t, "gpg")
	if algo == "" {
		algo = "rsa2048"
	}
	// A short path: gpg-agent's socket path must fit in sun_path, and
	// t.TempDir paths carry the test name.
	home, err := os.MkdirTemp("", "rpmrepo-gpg-")
	if err != nil {
		t.Fatalf("rpmrepo: make GNUPGHOME: %v", err)
	}
	t.Cleanup(func() {
		// Stop the agent gpg started for this home before removing it.
		if gc, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(gc, "--homedir", home, "--kill", "gpg-agent")
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatalf("rpmrepo: chmod GNUPGHOME: %v", err)
	}
	n := keySerial.Add(1)
	k := &Key{
		Home: home,
		UID:  fmt.Sprintf("pkgswarm test %d <test%d@example.invalid>", n, n),
		Algo: algo,
	}
	run(t, nil, gpg, "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
		"--quick-gen-key", k.UID, algo, "sign", "never")
	out := run(t, nil, gpg, "--homedir", home, "--batch", "--with-colons", "--list-keys", k.UID)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		switch {
		case f[0] == "pub" && len(f) > 4 && k.KeyID == "":
			k.KeyID = f[4]
		case f[0] == "fpr" && len(f) > 9 && k.Fingerprint == "":
			k.Fingerprint = f[9]
		}
	}
	if k.KeyID == "" || k.Fingerprint == "" {
		t.Fatalf("rpmrepo: no key ID in gpg --list-keys output:\n%s", out)
	}
	k.Armored = run(t, nil, gpg, "--homedir", home, "--batch", "--armor", "--export", k.Fingerprint)
	k.Binary = run(t, nil, gpg, "--homedir", home, "--batch", "--export", k.Fingerprint)
	return k
}

// signArgs are the rpmsign macro definitions that make it sign with k.
func (k *Key) signArgs(t testing.TB) []string {
	return []string{
		"--define", "_gpg_name " + k.Fingerprint,
		"--define", "_gpg_path " + k.Home,
		"--define", "__gpg " + need(t, "gpg"),
	}
}

// DetachSign returns an armored detached signature of data, as found in
// repodata/repomd.xml.asc.
func (k *Key) DetachSign(t testing.TB, data []byte) []byte {
	t.Helper()
	return run(t, data, need(t, "gpg"), "--homedir", k.Home, "--batch", "--pinentry-mode", "loopback",
		"--passphrase", "", "--local-user", k.Fingerprint, "--armor", "--detach-sign", "--output", "-")
}

// need returns the path of an external program or fails the test naming the
// Debian package that provides it.
func need(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		pkg := map[string]string{
			"rpmbuild": "rpm", "rpmsign": "rpm", "rpm": "rpm", "rpmkeys": "rpm",
			"createrepo_c": "createrepo-c", "gpg": "gpg",
		}[prog]
		t.Fatalf("rpmrepo: %s not found in PATH; install the Debian package %q", prog, pkg)
	}
	return p
}

// run runs a program and returns its standard output, failing the test with
// its standard error when it fails.
func run(t testing.TB, stdin []byte, prog string, args ...string) []byte {
	t.Helper()
	out, err := runErr(stdin, nil, prog, args...)
	if err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
	return out
}

func runErr(stdin []byte, env []string, prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(prog, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s",
			prog, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}
