package trust

import "testing"

func TestClassify(t *testing.T) {
	t.Parallel()
	hex64 := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		path string
		want class
		ok   bool
	}{
		{"/debian/dists/bookworm/InRelease", class{FormatApt, kindAptRoot}, true},
		{"/debian/dists/bookworm/Release.gpg", class{FormatApt, kindAptRoot}, true},
		{"/flat/InRelease", class{FormatApt, kindAptRoot}, true},
		{"/debian/dists/bookworm/main/binary-amd64/Release", class{FormatApt, kindAptIndex}, true},
		{"/debian/dists/bookworm/main/binary-amd64/Packages.xz", class{FormatApt, kindAptIndex}, true},
		{"/debian/dists/bookworm/main/i18n/Translation-en.bz2", class{FormatApt, kindAptIndex}, true},
		{"/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/" + hex64, class{FormatApt, kindAptIndex}, true},
		{"/debian/pool/main/h/hello/hello_2.10-3_amd64.deb", class{FormatApt, kindAptPackage}, true},
		{"/debian/pool/main/h/hello/hello_2.10.orig.tar.gz", class{FormatApt, kindAptPackage}, true},
		{"/debian/pool/main/h/hello/hello_2.10-3.debian.tar.xz", class{FormatApt, kindAptPackage}, true},
		{"/debian/pool/main/h/hello/hello_2.10-3.dsc", class{FormatApt, kindAptPackage}, true},
		{"/m/media/core/release/media_info/MD5SUM", class{FormatURPMI, kindURPMIMD5SUM}, true},
		{"/m/media/core/release/media_info/pubkey", class{FormatURPMI, kindURPMIPubkey}, true},
		{"/m/media/core/release/media_info/synthesis.hdlist.cz", class{FormatURPMI, kindURPMIMediaInfo}, true},
		{"/m/media/core/release/media_info/20240101-120000-synthesis.hdlist.cz", class{FormatURPMI, kindURPMIMediaInfo}, true},
		{"/m/media/media_info/media.cfg", class{FormatURPMI, kindURPMIOther}, true},
		{"/m/media/core/release/foo-1.0-1.mga9.x86_64.rpm", class{"", kindRPM}, true},
		{"/r/repodata/repomd.xml", class{FormatRPMMD, kindRPMMDRepomd}, true},
		{"/r/repodata/repomd.xml.asc", class{FormatRPMMD, kindRPMMDRepomd}, true},
		{"/r/repodata/" + hex64 + "-primary.xml.gz", class{FormatRPMMD, kindRPMMDRepodata}, true},
		{"/r/repodata/comps.xml", class{FormatRPMMD, kindRPMMDRepodata}, true},
		// Not repository files: refused (not an open proxy). Paths of the
		// shapes a client used to read a service on a loopback address
		// through the proxy (issue 11, item 12) are strict now.
		{"/index.html", class{}, false},
		{"/x/by-hash/y", class{}, false},
		{"/debian/dists/bookworm/main/by-hash/SHA256/not-hex", class{}, false},
		{"/admin/repodata/secrets", class{}, false},
		{"/admin/repodata/x.json", class{}, false},
		{"/admin/media_info/secrets", class{}, false},
		{"/etc/passwd.txt", class{}, false},
		{"/api/status.gz", class{}, false},
	}
	for _, tc := range tests {
		got, ok := classify(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("classify(%q) = %+v %v, want %+v %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"/debian/dists/x/InRelease", "/m/media_info/MD5SUM", "/r/repodata/repomd.xml", "/a.deb", "/x/by-hash/SHA256/ab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, ok := classify(p)
		if ok && c.kind == 0 {
			t.Fatalf("classify(%q) accepted with no kind", p)
		}
		if !ok && c != (class{}) {
			t.Fatalf("classify(%q) refused with a class %+v", p, c)
		}
	})
}

func TestPoolPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p, component, arch string
		ok                 bool
	}{
		{"/debian/pool/main/h/hello/hello_2.10-3_amd64.deb", "main", "amd64", true},
		{"/debian/pool/contrib/f/foo/foo_1.0_all.deb", "contrib", "all", true},
		{"/debian/pool/main/d/d-i/d-i_1_arm64.udeb", "main", "arm64", true},
		{"/debian/pool/main/h/hello/hello_2.10-3.dsc", "", "", false},
		{"/flat/hello_1_amd64.deb", "", "", false},
		{"/debian/pool/hello.deb", "", "", false},
	} {
		c, a, ok := poolPlace(tc.p)
		if c != tc.component || a != tc.arch || ok != tc.ok {
			t.Errorf("poolPlace(%q) = %q %q %v, want %q %q %v", tc.p, c, a, ok, tc.component, tc.arch, tc.ok)
		}
	}
}
