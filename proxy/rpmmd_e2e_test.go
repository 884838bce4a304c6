package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// dnfClient is a real dnf in an installroot under a temporary directory,
// with its own repos directory, cache and download directory.
type dnfClient struct {
	t                        *testing.T
	root, cache, dl, keyFile string
}

// newDNF writes a repository file for the medium at mediumPath: baseurl is
// the origin (proxy=) in forward mode, or the prefix URL.
func (r *rpmRig) newDNF(mediumPath string, prefix, gpg bool) *dnfClient {
	t := r.t
	t.Helper()
	if _, err := exec.LookPath("dnf"); err != nil {
		t.Fatalf("dnf is not installed (Debian package dnf): %v", err)
	}
	base := t.TempDir()
	c := &dnfClient{t: t, root: filepath.Join(base, "root"), cache: filepath.Join(base, "cache"), dl: filepath.Join(base, "dl"),
		keyFile: filepath.Join(base, "RPM-GPG-KEY-test")}
	for _, d := range []string{c.root, c.cache, c.dl, filepath.Join(base, "repos")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(c.keyFile, r.tree.Key.Armored, 0o644); err != nil {
		t.Fatal(err)
	}
	baseurl, proxyLine := r.originURL(mediumPath), "proxy="+r.URL+"\n"
	if prefix {
		baseurl, proxyLine = r.prefixURL(mediumPath), "proxy=_none_\n"
	}
	check := "0"
	if gpg {
		check = "1"
	}
	repo := fmt.Sprintf("[pkgswarm-test]\nname=pkgswarm test\nbaseurl=%s\n%sgpgcheck=%s\nrepo_gpgcheck=%s\ngpgkey=file://%s\nmetadata_expire=0\nskip_if_unavailable=False\n",
		baseurl, proxyLine, check, check, c.keyFile)
	if err := os.WriteFile(filepath.Join(base, "repos", "test.repo"), []byte(repo), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := "[main]\ngpgcheck=" + check + "\ninstall_weak_deps=False\nbest=True\nkeepcache=True\nreposdir=" + filepath.Join(base, "repos") + "\n"
	if err := os.WriteFile(filepath.Join(base, "dnf.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// download runs dnf install --downloadonly for pkgs and returns its output.
func (c *dnfClient) download(pkgs ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"-y", "-q", "--installroot=" + c.root, "--config=" + filepath.Join(filepath.Dir(c.root), "dnf.conf"),
		"--setopt=reposdir=" + filepath.Join(filepath.Dir(c.root), "repos"), "--setopt=cachedir=" + c.cache,
		"--setopt=logdir=" + c.cache, "--setopt=persistdir=" + filepath.Join(c.cache, "persist"),
		"--releasever=9", "--disablerepo=*", "--enablerepo=pkgswarm-test", "--noplugins",
		"install", "--downloadonly", "--downloaddir=" + c.dl}
	cmd := exec.CommandContext(ctx, "dnf", append(args, pkgs...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.cache, "LC_ALL=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestDNFThroughProxy: real dnf downloads a medium's packages through
// pkgswarm (proxy= and prefix baseurl), the second time from the cache with
// no origin rpm GET; the repository's repomd.xml is signed and checked, and
// every rpm's signature too.
func TestDNFThroughProxy(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{SignRepomd: true}, nil)
	r.start(func(c *node.Config) { c.RPMKeys = r.keys() })
	m := r.medium("core/release")
	names := []string{"alpha", "bravo"}

	first := r.newDNF(m.URLPath, false, true)
	if out, err := first.download(names...); err != nil {
		t.Fatalf("dnf through the proxy: %v\n%s", err, out)
	}
	first.check(m)
	rpmGets := r.origin.Requests(".rpm")
	if rpmGets != len(m.Packages) {
		t.Errorf("first dnf: %d origin rpm GETs, want %d", rpmGets, len(m.Packages))
	}
	for _, b := range m.Packages {
		if !noderig.Eventually(func() bool { return r.Store.Shareable(store.Digest(b.SHA256)) }) {
			t.Errorf("%s is not marked verified for peers", b.NEVRA)
		}
	}

	second := r.newDNF(m.URLPath, true, true)
	if out, err := second.download(names...); err != nil {
		t.Fatalf("dnf in prefix mode: %v\n%s", err, out)
	}
	second.check(m)
	if got := r.origin.Requests(".rpm"); got != rpmGets {
		t.Errorf("second dnf: %d more origin rpm GETs, want 0", got-rpmGets)
	}
	var signed bool
	for _, st := range r.Trust.RPMRepos() {
		if st.Kind == "rpm-md" && strings.HasSuffix(st.Repo, m.URLPath) {
			signed = st.Signed
		}
	}
	if !signed {
		t.Errorf("RPMStatus = %+v, want the repository signed", r.Trust.RPMRepos())
	}

	// A urpmi client of the same medium is served the same files from the
	// cache, proven its own way (signature, NEVRA, synthesis size).
	u := r.urpmi(false)
	u.addMedia()
	var paths []string
	for _, b := range m.Packages {
		paths = append(paths, b.URLPath)
	}
	u.mustCurl(false, paths...)
	if got := r.origin.Requests(".rpm"); got != rpmGets {
		t.Errorf("urpmi after dnf: %d more origin rpm GETs, want 0", got-rpmGets)
	}
}

// check compares what dnf downloaded with the medium's rpms.
func (c *dnfClient) check(m *rpmrepo.Medium) {
	c.t.Helper()
	for _, b := range m.Packages {
		got, err := os.ReadFile(filepath.Join(c.dl, filepath.Base(b.File)))
		if err != nil {
			c.t.Fatalf("dnf did not download %s: %v", b.NEVRA, err)
		}
		want, _ := os.ReadFile(b.File)
		if !bytes.Equal(got, want) {
			c.t.Fatalf("dnf got a different %s", b.NEVRA)
		}
	}
}

// TestRPMMDRefusesBadRPMs: with keys configured, an rpm-md repository whose
// metadata lists a tampered, re-signed or unsigned rpm (by its own sha256,
// as a compromised mirror would publish it) is refused by signature.
func TestRPMMDRefusesBadRPMs(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{Packages: []rpmrepo.Package{
		{Name: "tampered", Size: 30 << 10, Seed: 11},
		{Name: "resigned", Size: 10 << 10, Seed: 12},
		{Name: "unsigned", Size: 10 << 10, Seed: 13},
	}}, nil)
	other := rpmrepo.NewKey(t, "")
	r.start(func(c *node.Config) { c.RPMKeys = r.keys() })
	cases := []struct {
		name   string
		make   func(src, dst string)
		reason string
	}{
		{"tampered", func(src, dst string) { rpmrepo.Tampered(t, src, dst) }, "payload digest mismatch"},
		{"resigned", func(src, dst string) { rpmrepo.Resigned(t, src, dst, other) }, "signed by no trusted key"},
		{"unsigned", func(src, dst string) { rpmrepo.Unsigned(t, src, dst) }, "not signed"},
	}
	m := r.medium("core/release")
	tmp := t.TempDir()
	for _, tc := range cases {
		b := r.tree.Package(tc.name + "-1.0-1.mga9.noarch")
		dst := filepath.Join(tmp, tc.name+".rpm")
		tc.make(b.File, dst)
		rpmrepo.CopyFile(t, dst, b.File)
	}
	// The mirror regenerates its metadata over the bad files.
	if out, err := exec.Command("createrepo_c", "--quiet", "--no-database", m.Dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	if resp, body := r.get(m.URLPath + "/repodata/repomd.xml"); resp.StatusCode != http.StatusOK {
		t.Fatalf("repomd.xml: %d %s", resp.StatusCode, clip(body))
	}
	dnf := r.newDNF(m.URLPath, false, false)
	out, err := dnf.download("tampered")
	if err == nil {
		t.Errorf("dnf downloaded a tampered rpm through the proxy:\n%s", out)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := r.tree.Package(tc.name + "-1.0-1.mga9.noarch")
			resp, body := r.get(b.URLPath)
			msg := strings.TrimSuffix(string(body), "\n")
			if resp.StatusCode != http.StatusBadGateway || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.reason) {
				t.Errorf("%d %s, want 502 with one line saying %q", resp.StatusCode, clip([]byte(msg)), tc.reason)
			}
			data, _ := os.ReadFile(b.File)
			if r.Store.HasBlob(store.DigestOf(data)) {
				t.Errorf("the refused rpm is in the store")
			}
		})
	}
}

// TestRepomdSignature: a repomd.xml whose signature does not verify is
// refused and the accepted one keeps serving; one without repomd.xml.asc
// after a signed one is refused too.
func TestRepomdSignature(t *testing.T) {
	r := newRPMRig(t, rpmrepo.Options{SignRepomd: true, Packages: []rpmrepo.Package{{Name: "alpha", Size: 10 << 10, Seed: 1}}}, nil)
	r.start(func(c *node.Config) { c.RPMKeys = r.keys(); c.Revalidate = time.Nanosecond })
	m := r.medium("core/release")
	repomd := m.URLPath + "/repodata/repomd.xml"
	resp, good := r.get(repomd)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("repomd.xml: %d %s", resp.StatusCode, clip(good))
	}
	if resp, _ := r.get(repomd + ".asc"); resp.StatusCode != http.StatusOK {
		t.Fatalf("repomd.xml.asc: %d", resp.StatusCode)
	}
	r.origin.Tamper("repomd.xml", func(b []byte) []byte {
		return bytes.Replace(b, []byte("<revision>"), []byte("<revision>1"), 1)
	})
	resp, body := r.get(repomd)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, good) {
		t.Errorf("altered repomd.xml: %d, %d bytes; want the accepted copy served", resp.StatusCode, len(body))
	}
	r.origin.Untamper("repomd.xml")
	r.origin.FailWith("repomd.xml.asc", http.StatusNotFound)
	if err := os.Chtimes(filepath.Join(m.Dir, "repodata", "repomd.xml"), time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.origin.Tamper("repomd.xml", func(b []byte) []byte { return append(bytes.Clone(b), '\n') })
	resp, body = r.get(repomd)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, good) {
		t.Errorf("unsigned repomd.xml after a signed one: %d, %d bytes; want the accepted copy", resp.StatusCode, len(body))
	}
	var reasons []string
	for _, f := range r.State().Failures {
		reasons = append(reasons, f.Reason)
	}
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "signature does not verify") || !strings.Contains(all, "has no repomd.xml.asc") {
		t.Errorf("failures %q: want the bad signature and the missing one", all)
	}
}
