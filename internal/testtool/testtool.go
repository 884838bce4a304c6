// Package testtool finds the programs that tests drive (apt-get, gpg, xz,
// chromium, …). A test whose program is missing is skipped with a message
// naming the Debian package to install, except under CI=true, where
// scripts/test installs every one of them: there it fails, so that a green
// run means the real tools ran.
package testtool

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// Chromium runs headless Chromium (Debian package chromium) on url with
// args added to a profile of its own that reaches nothing but url (no
// proxy, no background or update traffic), and returns its stdout: with
// --dump-dom the DOM once the page's script has run.
func Chromium(tb testing.TB, url string, args ...string) string {
	tb.Helper()
	bin := Need(tb, "chromium", "chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-default-apps", "--no-proxy-server", "--hide-scrollbars", "--user-data-dir=" + tb.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("chromium %v %s: %v\n%s", args, url, err, stderr.String())
	}
	return string(out)
}
