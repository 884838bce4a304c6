package rpmrepo

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildTree(t *testing.T) {
	key := NewKey(t, "")
	tr := Build(t, Options{
		Key: key,
		Packages: []Package{
			{Name: "alpha", Size: 3000, Seed: 1},
			{Name: "beta", Version: "2.5", Release: "3.mga9", Epoch: 2, Size: 70000, Seed: 2, Requires: []string{"alpha >= 1.0"}},
			{Name: "gamma", Size: 10, Seed: 3, Medium: "core/updates", Payload: "w9.xzdio"},
		},
		Versioned:  "20240102-030405",
		SignRepomd: true,
	})
	if len(tr.Media) != 2 {
		t.Fatalf("got %d media, want 2", len(tr.Media))
	}
	for _, m := range tr.Media {
		for _, name := range []string{"media_info/synthesis.hdlist.cz", "media_info/20240102-030405-synthesis.hdlist.cz",
			"media_info/MD5SUM", "media_info/pubkey", "repodata/repomd.xml", "repodata/repomd.xml.asc"} {
			if _, err := os.Stat(filepath.Join(m.Dir, name)); err != nil {
				t.Errorf("medium %s: %v", m.Path, err)
			}
		}
		want := fmt.Sprintf("%x  synthesis.hdlist.cz\n", md5.Sum(m.Synthesis))
		if !strings.Contains(string(m.MD5SUM), want) {
			t.Errorf("medium %s: MD5SUM %q lacks %q", m.Path, m.MD5SUM, want)
		}
		for _, b := range m.Packages {
			if !bytes.Contains(m.SynthesisPlain, []byte(fmt.Sprintf("@filesize@%d\n@info@%s@", b.Size, b.NEVRA))) {
				t.Errorf("synthesis of %s lacks the filesize/info lines of %s:\n%s", m.Path, b.NEVRA, m.SynthesisPlain)
			}
		}
	}
	beta := tr.Package("beta-2.5-3.mga9.noarch")
	if beta == nil {
		t.Fatal("beta not in tree")
	}
	if !bytes.Contains(tr.Media[0].SynthesisPlain, []byte("@requires@alpha[>= 1.0]")) {
		t.Errorf("synthesis lacks beta's requires:\n%s", tr.Media[0].SynthesisPlain)
	}
	if !bytes.Contains(tr.Media[0].SynthesisPlain, []byte("@info@beta-2.5-3.mga9.noarch@2@70000@System/Base\n")) {
		t.Errorf("synthesis lacks beta's info line:\n%s", tr.Media[0].SynthesisPlain)
	}
	if _, err := os.Stat(filepath.Join(tr.Dir, tr.Prefix, "media", "media_info", "media.cfg")); err != nil {
		t.Error(err)
	}

	dir := t.TempDir()
	other := NewKey(t, "")
	tampered := filepath.Join(dir, "tampered.rpm")
	resigned := filepath.Join(dir, "resigned.rpm")
	unsigned := filepath.Join(dir, "unsigned.rpm")
	Tampered(t, beta.File, tampered)
	Resigned(t, beta.File, resigned, other)
	Unsigned(t, beta.File, unsigned)
	ok, out := CheckSig(t, []*Key{key}, beta.File, tampered, resigned, unsigned)
	want := []bool{true, false, false, false}
	for i := range ok {
		if ok[i] != want[i] {
			t.Errorf("rpmkeys --checksig verdict %d = %v, want %v; output:\n%s", i, ok[i], want[i], out[i])
		}
	}
}
