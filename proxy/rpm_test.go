package proxy

import (
	"strings"
	"testing"
)

func TestRPMPathKind(t *testing.T) {
	t.Parallel()
	const m = "/distrib/9/x86_64/media/core/release"
	for _, tc := range []struct {
		path string
		want rpmKind
	}{
		{m + "/media_info/MD5SUM", rpmMD5SUM},
		{m + "/media_info/pubkey", rpmPubkey},
		{m + "/media_info/synthesis.hdlist.cz", rpmMediaInfo},
		{m + "/media_info/hdlist.cz", rpmMediaInfo},
		{m + "/media_info/info.xml.lzma", rpmMediaInfo},
		{m + "/media_info/descriptions", rpmMediaInfo},
		{m + "/media_info/20240101-120000-synthesis.hdlist.cz", rpmMediaInfo},
		{m + "/alpha-1.0-1.mga9.noarch.rpm", rpmPackage},
		{m + "/repodata/repomd.xml", rpmRepomd},
		{m + "/repodata/repomd.xml.asc", rpmRepomd},
		{m + "/repodata/repomd.xml.key", rpmOther},
		{m + "/repodata/0123-primary.xml.gz", rpmRepodata},
		{"/fedora/Packages/a/alpha-1.0-1.fc40.x86_64.rpm", rpmPackage},
		{"/distrib/9/x86_64/media/media_info/media.cfg", rpmOther},
		{"/distrib/9/x86_64/media/media_info/pubkey", rpmOther},
		{"/mirrors/mageia.9.x86_64.list", rpmOther},
		{"/repodata/repomd.xml", rpmOther}, // no repository above repodata/
	} {
		t.Run(strings.TrimPrefix(tc.path, m), func(t *testing.T) {
			if got := rpmPathKind(tc.path); got != tc.want {
				t.Errorf("rpmPathKind(%q) = %d, want %d", tc.path, got, tc.want)
			}
		})
	}
}

func TestRevisionOlder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1700000000", "1700000001", true},
		{"1700000001", "1700000000", false},
		{"5", "5", false},
		{"abc", "1", false},
		{"", "1", false},
	} {
		if got := revisionOlder(tc.a, tc.b); got != tc.want {
			t.Errorf("revisionOlder(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// FuzzRPMPathKind: classification never panics, and everything that is a
// package ends in .rpm.
func FuzzRPMPathKind(f *testing.F) {
	for _, s := range []string{"/a/media_info/MD5SUM", "/a/b.rpm", "/a/repodata/repomd.xml", "/", "", "/media_info/x",
		"/a/media/media_info/media.cfg", "/x/repodata/0-primary.xml.zst"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		k := rpmPathKind(p)
		if k == rpmPackage && !strings.HasSuffix(p, ".rpm") {
			t.Errorf("rpmPathKind(%q) = package", p)
		}
		if k == rpmRepomd && !strings.Contains(p, "repomd.xml") {
			t.Errorf("rpmPathKind(%q) = repomd", p)
		}
	})
}

// FuzzDecodeRepomdState: the stored state of a repository decodes or fails
// cleanly.
func FuzzDecodeRepomdState(f *testing.F) {
	f.Add([]byte(`{"signed":true,"signer":"0123456789abcdef","revision":"1700000000","accepted":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"signed":"yes"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeRepomdState(b)
		if err != nil && (st.Signed || st.Signer != "") {
			t.Errorf("error %v with a non-zero state %+v", err, st)
		}
	})
}
