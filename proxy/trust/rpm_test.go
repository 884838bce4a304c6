package trust

import (
	"strings"
	"testing"
)

func TestClassifyRPMFamily(t *testing.T) {
	t.Parallel()
	const m = "/distrib/9/x86_64/media/core/release"
	for _, tc := range []struct {
		path string
		want class
	}{
		{m + "/media_info/MD5SUM", class{FormatURPMI, kindURPMIMD5SUM}},
		{m + "/media_info/pubkey", class{FormatURPMI, kindURPMIPubkey}},
		{m + "/media_info/synthesis.hdlist.cz", class{FormatURPMI, kindURPMIMediaInfo}},
		{m + "/media_info/hdlist.cz", class{FormatURPMI, kindURPMIMediaInfo}},
		{m + "/media_info/info.xml.lzma", class{FormatURPMI, kindURPMIMediaInfo}},
		{m + "/media_info/descriptions", class{FormatURPMI, kindURPMIMediaInfo}},
		{m + "/media_info/20240101-120000-synthesis.hdlist.cz", class{FormatURPMI, kindURPMIMediaInfo}},
		{m + "/alpha-1.0-1.mga9.noarch.rpm", class{"", kindRPM}},
		{m + "/repodata/repomd.xml", class{FormatRPMMD, kindRPMMDRepomd}},
		{m + "/repodata/repomd.xml.asc", class{FormatRPMMD, kindRPMMDRepomd}},
		{m + "/repodata/repomd.xml.key", class{FormatRPMMD, kindRPMMDKey}},
		{m + "/repodata/0123-primary.xml.gz", class{FormatRPMMD, kindRPMMDRepodata}},
		{"/fedora/Packages/a/alpha-1.0-1.fc40.x86_64.rpm", class{"", kindRPM}},
		{"/distrib/9/x86_64/media/media_info/media.cfg", class{FormatURPMI, kindURPMIOther}},
		{"/distrib/9/x86_64/media/media_info/pubkey", class{FormatURPMI, kindURPMIOther}},
		{"/mirrors/mageia.9.x86_64.list", class{FormatURPMI, kindURPMIOther}},
		{"/repodata/repomd.xml", class{}}, // no repository above repodata/: refused
	} {
		t.Run(strings.TrimPrefix(tc.path, m), func(t *testing.T) {
			if got, _ := classify(tc.path); got != tc.want {
				t.Errorf("classify(%q) = %+v, want %+v", tc.path, got, tc.want)
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
