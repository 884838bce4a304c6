// Package testtool finds the programs that tests drive (apt-get, gpg, xz,
// chromium, …). A test whose program is missing is skipped with a message
// naming the Debian package to install, except under CI=true, where
// scripts/test installs every one of them: there it fails, so that a green
// run means the real tools ran.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of the program name, from Debian package pkg. When
// name is not in PATH it skips tb, or fails it under CI=true.
func Need(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is not installed (Debian package %s), and under CI=true a missing tool fails the test: scripts/test installs it", name, pkg)
	}
	tb.Skipf("%s is not installed (Debian package %s); install it to run this test", name, pkg)
	return ""
}
