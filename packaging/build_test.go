package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// built holds the packages built once for every test of this file.
var built struct {
	deb, rpm string
	err      error
}

func TestMain(m *testing.M) {
	os.Exit(runWithPackages(m))
}

func runWithPackages(m *testing.M) int {
	out, err := os.MkdirTemp("", "pkgswarm-packages-")
	if err != nil {
		built.err = err
		return m.Run()
	}
	defer os.RemoveAll(out)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// PKGSWARM_PACKAGING_OVERLAY: a go build -overlay file, to build
	// sources not yet committed.
	paths, err := Build(ctx, Options{SourceDir: "..", OutDir: out, Version: "1.2.3",
		Overlay: os.Getenv("PKGSWARM_PACKAGING_OVERLAY")})
	built.err = err
	for _, p := range paths {
		switch filepath.Ext(p) {
		case ".deb":
			built.deb = p
		case ".rpm":
			built.rpm = p
		}
	}
	return m.Run()
}

// need skips the test when a program it drives is missing, or fails it
// under CI=true, where scripts/test installs every one (this module cannot
// use the main module's internal/testtool).
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed, and under CI=true a missing tool fails the test: scripts/test installs it", tool)
			}
			t.Skipf("%s is not installed; install it to run this test", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

func packages(t *testing.T) {
	t.Helper()
	if built.err != nil {
		t.Fatalf("building the packages: %v", built.err)
	}
	if built.deb == "" || built.rpm == "" {
		t.Fatalf("Build made no .deb or no .rpm (deb %q, rpm %q)", built.deb, built.rpm)
	}
}

// payload is what every package installs, by path (the unit and zsh
// directories differ between the formats).
func payload(unitDir, zshDir string) []string {
	return []string{
		"/usr/bin/pkgswarm",
		unitDir + "/pkgswarm.service",
		"/etc/pkgswarm/pkgswarm.toml",
		"/usr/share/man/man8/pkgswarm.8.gz",
		"/usr/share/bash-completion/completions/pkgswarm",
		zshDir + "/_pkgswarm",
	}
}

func TestDeb(t *testing.T) {
	need(t, "dpkg-deb")
	packages(t)
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", built.deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		paths = append(paths, strings.TrimPrefix(f[5], "."))
	}
	want := append(payload("/lib/systemd/system", "/usr/share/zsh/vendor-completions"),
		"/usr/share/doc/pkgswarm/copyright", "/usr/share/doc/pkgswarm/changelog.Debian.gz", "/usr/share/lintian/overrides/pkgswarm")
	for _, p := range want {
		if !slices.Contains(paths, p) {
			t.Errorf("the .deb lacks %s; it has %v", p, paths)
		}
	}

	fields := run(t, "dpkg-deb", "-f", built.deb, "Package", "Version", "Architecture", "Section", "Maintainer")
	for _, w := range []string{"Package: pkgswarm", "Version: 1.2.3-1", "Section: net", "Maintainer: " + DefaultMaintainer} {
		if !strings.Contains(fields, w) {
			t.Errorf("control lacks %q:\n%s", w, fields)
		}
	}

	ctl := t.TempDir()
	run(t, "dpkg-deb", "-e", built.deb, ctl)
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/pkgswarm/pkgswarm.toml" {
		t.Errorf("conffiles = %q, want the config file", b)
	}
	for script, wants := range map[string][]string{
		"postinst": {"daemon-reload", "systemctl enable --now pkgswarm"},
		"prerm":    {"pkgswarm setup --undo", "disable --now pkgswarm.service"},
		"postrm":   {"purge)", "rm -rf /var/cache/pkgswarm /var/cache/private/pkgswarm"},
	} {
		p := filepath.Join(ctl, script)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("maintainer script %s: %v, mode %v", script, err, fi)
			continue
		}
		run(t, "sh", "-n", p)
		b, _ := os.ReadFile(p)
		for _, w := range wants {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s does not contain %q", script, w)
			}
		}
	}

	root := t.TempDir()
	run(t, "dpkg-deb", "-x", built.deb, root)
	bin := filepath.Join(root, "usr/bin/pkgswarm")
	if v := run(t, bin, "--version"); !strings.Contains(v, "1.2.3") {
		t.Errorf("pkgswarm --version = %q, want 1.2.3", v)
	}
	conf, _ := os.ReadFile(filepath.Join(root, "etc/pkgswarm/pkgswarm.toml"))
	if gen := run(t, bin, "gendoc", "config"); string(conf) != gen {
		t.Errorf("the packaged config differs from what the packaged binary generates")
	}
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			t.Errorf("the default config sets %q: every setting should be commented out", l)
		}
	}
	for _, key := range []string{"#listen = \":3142\"", "#cache-size = \"10G\"", "#log-level = \"info\""} {
		if !bytes.Contains(conf, []byte("\n"+key+"\n")) {
			t.Errorf("the default config lacks %s", key)
		}
	}
	if man := gunzip(t, filepath.Join(root, "usr/share/man/man8/pkgswarm.8.gz")); !strings.Contains(man, ".TH pkgswarm 8") || !strings.Contains(man, "setup") {
		t.Errorf("the man page is not one: %.200q", man)
	}
	checkUnit(t, filepath.Join(root, "lib/systemd/system/pkgswarm.service"), bin)
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// checkUnit checks the hardening of the unit and, when systemd-analyze is
// installed, that systemd parses every line of it.
func checkUnit(t *testing.T, path, bin string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = append(set[k], v)
		}
	}
	for k, v := range map[string]string{
		"ExecStart": "/usr/bin/pkgswarm serve", "DynamicUser": "yes", "StateDirectory": "pkgswarm",
		"CacheDirectory": "pkgswarm", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": "", "Restart": "on-failure", "PrivateTmp": "yes", "ProtectHome": "yes",
		"WantedBy": "multi-user.target",
	} {
		if !slices.Contains(set[k], v) {
			t.Errorf("unit: %s=%s not set (has %q)", k, v, set[k])
		}
	}
	if af := strings.Join(set["RestrictAddressFamilies"], " "); !strings.Contains(af, "AF_NETLINK") || !strings.Contains(af, "AF_INET6") {
		t.Errorf("unit: RestrictAddressFamilies=%s, want AF_INET, AF_INET6 and AF_NETLINK (interface listing for mDNS)", af)
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed: the unit's syntax is not checked by systemd")
		return
	}
	// Verify a copy whose ExecStart names the extracted binary.
	unit := filepath.Join(t.TempDir(), "pkgswarm.service")
	os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/bin/pkgswarm"), []byte(bin)), 0o644)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", unit)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestRpm(t *testing.T) {
	need(t, "rpm")
	packages(t)
	paths := strings.Fields(run(t, "rpm", "-qlp", built.rpm))
	for _, p := range payload("/usr/lib/systemd/system", "/usr/share/zsh/site-functions") {
		if !slices.Contains(paths, p) {
			t.Errorf("the .rpm lacks %s; it has %v", p, paths)
		}
	}
	if got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", built.rpm); !strings.HasPrefix(got, "pkgswarm 1.2.3 1 ") {
		t.Errorf("rpm header: %q", got)
	}
	if conf := strings.TrimSpace(run(t, "rpm", "-qpc", built.rpm)); conf != "/etc/pkgswarm/pkgswarm.toml" {
		t.Errorf("rpm config files = %q", conf)
	}
	scripts := run(t, "rpm", "-qp", "--scripts", built.rpm)
	for _, w := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "pkgswarm setup --undo", "remove | 0)"} {
		if !strings.Contains(scripts, w) {
			t.Errorf("rpm scripts lack %q:\n%s", w, scripts)
		}
	}
}

func TestLintian(t *testing.T) {
	need(t, "lintian")
	packages(t)
	cmd := exec.Command("lintian", "--tag-display-limit", "0", built.deb)
	out, _ := cmd.CombinedOutput() // lintian exits non-zero on errors; read its report
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}
