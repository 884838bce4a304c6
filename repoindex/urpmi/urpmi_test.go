package urpmi_test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/rpmrepo"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

const mageiaSynthesis = `@provides@bash[== 5.2.15-2.mga9]@bash(x86-64)[== 5.2.15-2.mga9]@/bin/sh
@requires@libc.so.6()(64bit)@libtinfo.so.6()(64bit)@filesystem[*]
@summary@The GNU Bourne Again shell (bash)
@filesize@1822384
@info@bash-5.2.15-2.mga9.x86_64@0@7012345@Shells
@provides@lib64foo-devel[== 1:2.0-0.rc1.1.mga9]
@conflicts@foo-devel[< 1:2.0]
@summary@Development files @ odd summary
@filesize@9
@info@lib64foo-devel-2.0-0.rc1.1.mga9.x86_64@1@100@Development/C@mga9@
@summary@Synthesis from before @filesize@ existed
@info@old-1.0-1mdk.i586@0@5@Games
`

// TestTreeMetadata parses the metadata of a real tree built by rpmrepo and
// checks it against what was built.
func TestTreeMetadata(t *testing.T) {
	for _, comp := range []rpmrepo.Compression{rpmrepo.XZ, rpmrepo.Gzip} {
		name := map[rpmrepo.Compression]string{rpmrepo.XZ: "xz", rpmrepo.Gzip: "gzip"}[comp]
		t.Run(name, func(t *testing.T) {
			tr := rpmrepo.Build(t, rpmrepo.Options{
				Synthesis:  comp,
				NoRepodata: true,
				Versioned:  "20240102-030405",
				Packages: []rpmrepo.Package{
					{Name: "alpha", Size: 1000, Seed: 1},
					{Name: "beta-tools", Version: "2.1", Release: "3.mga9", Epoch: 4, Arch: "x86_64", Size: 2000, Seed: 2, Requires: []string{"alpha >= 1.0"}},
					{Name: "gamma", Size: 10, Seed: 3, Medium: "nonfree/updates"},
				},
			})
			cfgData, err := os.ReadFile(filepath.Join(tr.Dir, tr.Prefix, "media", "media_info", "media.cfg"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := urpmi.ParseMediaCfg(bytes.NewReader(cfgData))
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Media) != len(tr.Media) || cfg.Info["version"] != "9" || cfg.Info["arch"] != "x86_64" {
				t.Fatalf("media.cfg parsed as %+v", cfg)
			}
			for i, m := range tr.Media {
				cm := cfg.Media[i]
				if cm.Section != m.Path || cm.Name != m.Name {
					t.Errorf("medium %d = %q %q, want %q %q", i, cm.Section, cm.Name, m.Path, m.Name)
				}
				synth, err := os.ReadFile(filepath.Join(tr.Dir, filepath.FromSlash(m.URLPath), "media_info", "synthesis.hdlist.cz"))
				if err != nil {
					t.Fatal(err)
				}
				md5data, err := os.ReadFile(filepath.Join(m.Dir, "media_info", "MD5SUM"))
				if err != nil {
					t.Fatal(err)
				}
				sums, err := urpmi.ParseMD5SUM(bytes.NewReader(md5data))
				if err != nil {
					t.Fatal(err)
				}
				if sums["synthesis.hdlist.cz"] != md5.Sum(synth) || sums["20240102-030405-synthesis.hdlist.cz"] != md5.Sum(synth) {
					t.Errorf("MD5SUM %v does not match the synthesis", sums)
				}
				var got []urpmi.SynthEntry
				if err := urpmi.ParseSynthesisCompressed(bytes.NewReader(synth), func(e urpmi.SynthEntry) error {
					got = append(got, e)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(m.Packages) {
					t.Fatalf("%d synthesis entries, %d packages", len(got), len(m.Packages))
				}
				for j, b := range m.Packages {
					want := urpmi.SynthEntry{NEVRA: b.NEVRA, Name: b.Name, Version: b.Version, Release: b.Release,
						Arch: b.Arch, Epoch: b.Epoch, FileSize: b.Size}
					if got[j] != want {
						t.Errorf("entry %d = %+v, want %+v", j, got[j], want)
					}
				}
				// The uncompressed parser refuses compressed input clearly.
				err = urpmi.ParseSynthesis(bytes.NewReader(synth), func(urpmi.SynthEntry) error { return nil })
				if !errors.Is(err, urpmi.ErrCompressed) {
					t.Errorf("ParseSynthesis on compressed input: %v", err)
				}
			}
		})
	}
}

func TestParseSynthesis(t *testing.T) {
	var got []urpmi.SynthEntry
	err := urpmi.ParseSynthesis(strings.NewReader(mageiaSynthesis), func(e urpmi.SynthEntry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []urpmi.SynthEntry{
		{NEVRA: "bash-5.2.15-2.mga9.x86_64", Name: "bash", Version: "5.2.15", Release: "2.mga9", Arch: "x86_64", FileSize: 1822384},
		{NEVRA: "lib64foo-devel-2.0-0.rc1.1.mga9.x86_64", Name: "lib64foo-devel", Version: "2.0", Release: "0.rc1.1.mga9", Arch: "x86_64", Epoch: 1, FileSize: 9},
		{NEVRA: "old-1.0-1mdk.i586", Name: "old", Version: "1.0", Release: "1mdk", Arch: "i586", FileSize: -1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	stop := errors.New("stop")
	n := 0
	err = urpmi.ParseSynthesis(strings.NewReader(mageiaSynthesis), func(urpmi.SynthEntry) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("callback error: got %v after %d calls, want stop after 1", err, n)
	}
}

func TestParseSynthesisErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no at", "hello\n", "line 1"},
		{"bad filesize", "@filesize@12x\n@info@a-1-1.noarch@0@1@G\n", "bad @filesize@"},
		{"negative filesize", "@filesize@-5\n", "bad @filesize@"},
		{"dangling filesize", "@info@a-1-1.noarch@0@1@G\n@filesize@5\n", "without an @info@"},
		{"bad epoch", "@info@a-1-1.noarch@x@1@G\n", "bad epoch"},
		{"no arch", "@info@a-1-1@0@1@G\n", "no .arch"},
		{"no release", "@info@a.noarch@0@1@G\n", "no -release"},
		{"slash in nevra", "@info@../../x-1-1.noarch@0@1@G\n", "contains '/'"},
		{"info without epoch", "@info@a-1-1.noarch\n", "needs NEVRA and epoch"},
		{"empty tag", "@@x\n", "empty tag"},
		{"line 3", "@summary@x\n\n@info@\n", "line 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := urpmi.ParseSynthesis(strings.NewReader(tc.in), func(urpmi.SynthEntry) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseMD5SUM(t *testing.T) {
	good := "0123456789abcdef0123456789abcdef  synthesis.hdlist.cz\r\n" +
		"ffffffffffffffffffffffffffffffff *20240102-030405-hdlist.cz\n\n"
	m, err := urpmi.ParseMD5SUM(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["synthesis.hdlist.cz"][0] != 0x01 || m["20240102-030405-hdlist.cz"][15] != 0xff {
		t.Errorf("parsed %x", m)
	}
	bad := []struct{ name, in string }{
		{"short digest", "0123  x\n"},
		{"not hex", "0123456789abcdef0123456789abcdeg  x\n"},
		{"one space", "0123456789abcdef0123456789abcdef x\n"},
		{"path", "0123456789abcdef0123456789abcdef  ../x\n"},
		{"dup", "0123456789abcdef0123456789abcdef  x\n0123456789abcdef0123456789abcdef  x\n"},
		{"no name", "0123456789abcdef0123456789abcdef  \n"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := urpmi.ParseMD5SUM(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), "line") {
				t.Fatalf("error %v, want a line error", err)
			}
		})
	}
}

const mageiaMediaCfg = `[media_info]
mediacfg_version=2
version=9
branch=Official
arch=x86_64
xml-info=1
; a comment

[core/release]
hdlist=hdlist_core_release.cz
name=Core Release
media_type=release

[core/updates]
name=Core Updates
media_type=updates
updates_for=core/release

[debug/core/release]
name=Core Release Debug
media_type=debug:release
noauto=1
debug_for=core/release
`

func TestParseMediaCfg(t *testing.T) {
	c, err := urpmi.ParseMediaCfg(strings.NewReader(mageiaMediaCfg))
	if err != nil {
		t.Fatal(err)
	}
	if c.Info["mediacfg_version"] != "2" || len(c.Media) != 3 {
		t.Fatalf("parsed %+v", c)
	}
	dbg := c.Medium("debug/core/release")
	if dbg == nil || !dbg.NoAuto || dbg.MediaType != "debug:release" || dbg.Keys["debug_for"] != "core/release" {
		t.Errorf("debug medium %+v", dbg)
	}
	if u := c.Medium("core/updates"); u == nil || u.UpdatesFor != "core/release" || u.NoAuto {
		t.Errorf("updates medium %+v", u)
	}
	if r := c.Medium("core/release"); r.Hdlist != "hdlist_core_release.cz" || r.SynthesisPath() != "core/release/media_info/synthesis.hdlist.cz" {
		t.Errorf("release medium %+v", r)
	}
	bad := []struct{ name, in string }{
		{"key outside section", "a=b\n"},
		{"dotdot section", "[../../etc]\n"},
		{"absolute section", "[/etc]\n"},
		{"dup section", "[a]\n[a]\n"},
		{"unterminated", "[a\n"},
		{"empty key", "[a]\n=b\n"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := urpmi.ParseMediaCfg(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), "line") {
				t.Fatalf("error %v, want a line error", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		path      string
		kind      urpmi.Kind
		ok        bool
		immutable bool
		medium    string
	}{
		{"/mageia/distrib/9/x86_64/media/core/release/bash-5.2.15-2.mga9.x86_64.rpm", urpmi.KindRPM, true, true, "/mageia/distrib/9/x86_64/media/core/release"},
		{"distrib/9/SRPMS/core/release/bash-5.2.15-2.mga9.src.rpm", urpmi.KindRPM, true, true, "distrib/9/SRPMS/core/release"},
		{"/d/media/core/release/media_info/MD5SUM", urpmi.KindMD5SUM, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/synthesis.hdlist.cz", urpmi.KindSynthesis, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/hdlist.cz", urpmi.KindHdlist, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/info.xml.lzma", urpmi.KindXMLInfo, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/changelog.xml.lzma", urpmi.KindXMLInfo, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/pubkey", urpmi.KindPubkey, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/descriptions", urpmi.KindDescriptions, true, false, "/d/media/core/release"},
		{"/d/media/core/release/media_info/20240102-030405-synthesis.hdlist.cz", urpmi.KindVersioned, true, true, "/d/media/core/release"},
		{"/d/media/media_info/media.cfg", urpmi.KindMediaCfg, true, false, ""},
		{"/d/media/media_info/pubkey", urpmi.KindPubkey, true, false, ""},
		{"/api/mageia.9.x86_64.list", urpmi.KindMirrorList, true, false, ""},
		{"/d/media/core/release/repodata/repomd.xml", urpmi.KindUnknown, false, false, "/d/media/core/release"},
		{"/d/media/core/release/MD5SUM", urpmi.KindUnknown, false, false, ""},
		{"/d/media/core/release/media_info/2024-bad-synthesis.hdlist.cz", urpmi.KindUnknown, false, false, "/d/media/core/release"},
		{"/index.html", urpmi.KindUnknown, false, false, ""},
		{".rpm", urpmi.KindUnknown, false, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			k, ok := urpmi.Classify(tc.path)
			if k != tc.kind || ok != tc.ok || k.Immutable() != tc.immutable {
				t.Errorf("Classify = %v, %v (immutable %v), want %v, %v (immutable %v)", k, ok, k.Immutable(), tc.kind, tc.ok, tc.immutable)
			}
			m, mok := urpmi.MediumDir(tc.path)
			if m != tc.medium || mok != (tc.medium != "") {
				t.Errorf("MediumDir = %q, %v, want %q", m, mok, tc.medium)
			}
		})
	}
}

func TestNameKey(t *testing.T) {
	base := urpmi.NameKey([]string{"AAAABBBBCCCCDDDD", "1111222233334444"}, "bash-5.2.15-2.mga9.x86_64", 1822384)
	// A fixed vector, computed from the documented encoding by a separate
	// implementation: the key is a wire format between nodes and must not
	// drift.
	const golden = "36080d7d9e621d8572aaf321bfb93c644c54e92bf6ab886f7f580d35b7cd3566"
	if base != golden {
		t.Fatalf("NameKey = %s, want %s", base, golden)
	}
	same := []struct {
		name string
		key  string
	}{
		{"order and case", urpmi.NameKey([]string{"1111222233334444", "aaaabbbbccccdddd"}, "bash-5.2.15-2.mga9.x86_64", 1822384)},
		{"duplicates and spaces", urpmi.NameKey([]string{" aaaabbbbccccdddd", "1111222233334444", "AAAABBBBCCCCDDDD"}, "bash-5.2.15-2.mga9.x86_64", 1822384)},
	}
	for _, tc := range same {
		if tc.key != base {
			t.Errorf("%s: %s != %s", tc.name, tc.key, base)
		}
	}
	differ := map[string]string{
		"size":        urpmi.NameKey([]string{"aaaabbbbccccdddd", "1111222233334444"}, "bash-5.2.15-2.mga9.x86_64", 1822385),
		"nevra":       urpmi.NameKey([]string{"aaaabbbbccccdddd", "1111222233334444"}, "bash-5.2.15-3.mga9.x86_64", 1822384),
		"keys":        urpmi.NameKey([]string{"aaaabbbbccccdddd"}, "bash-5.2.15-2.mga9.x86_64", 1822384),
		"no keys":     urpmi.NameKey(nil, "bash-5.2.15-2.mga9.x86_64", 1822384),
		"boundary":    urpmi.NameKey([]string{"aaaabbbbccccdddd1111222233334444"}, "bash-5.2.15-2.mga9.x86_64", 1822384),
		"id in nevra": urpmi.NameKey([]string{"aaaabbbbccccdddd"}, "1111222233334444bash-5.2.15-2.mga9.x86_64", 1822384),
	}
	seen := map[string]string{base: "base"}
	for name, k := range differ {
		if other, dup := seen[k]; dup {
			t.Errorf("%s collides with %s", name, other)
		}
		seen[k] = name
	}
}

func FuzzParseSynthesis(f *testing.F) {
	f.Add([]byte(mageiaSynthesis))
	f.Add([]byte("@info@a-1-1.noarch@0\n"))
	f.Add([]byte("@filesize@1\n@info@a-b-c-1-1.x@99@1@G@x@y\n"))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0})
	f.Add([]byte("@@@@\n\n@"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := urpmi.ParseSynthesis(bytes.NewReader(data), func(e urpmi.SynthEntry) error {
			if e.NEVRA != e.Name+"-"+e.Version+"-"+e.Release+"."+e.Arch {
				t.Fatalf("entry %+v: NEVRA does not match its parts", e)
			}
			if e.Name == "" || e.Version == "" || e.Release == "" || e.Arch == "" || e.Epoch < 0 {
				t.Fatalf("entry %+v has empty parts", e)
			}
			if e.FileSize == 0 || e.FileSize < -1 {
				t.Fatalf("entry %+v: FileSize must be positive or -1", e)
			}
			if strings.ContainsAny(e.NEVRA, "/@\n") {
				t.Fatalf("entry %+v: NEVRA with a path or field separator", e)
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "urpmi: ") {
			t.Fatalf("error without context: %v", err)
		}
	})
}

func FuzzParseMD5SUM(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef  synthesis.hdlist.cz\n"))
	f.Add([]byte("ffffffffffffffffffffffffffffffff *x\r\n\n"))
	f.Add([]byte("0123  x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := urpmi.ParseMD5SUM(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "urpmi: MD5SUM") && !strings.HasPrefix(err.Error(), "urpmi: read MD5SUM") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		for name := range m {
			if name == "" || strings.ContainsAny(name, "/\x00\n") || name == ".." {
				t.Fatalf("accepted file name %q", name)
			}
		}
	})
}

func FuzzParseMediaCfg(f *testing.F) {
	f.Add([]byte(mageiaMediaCfg))
	f.Add([]byte("[media_info]\n[a/b]\nnoauto\n"))
	f.Add([]byte("[\n]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := urpmi.ParseMediaCfg(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "urpmi: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		for _, m := range c.Media {
			if m.Section == "" || strings.HasPrefix(m.Section, "/") || strings.Contains("/"+m.Section+"/", "/../") {
				t.Fatalf("accepted medium section %q", m.Section)
			}
			if m.Name == "" {
				t.Fatalf("medium %q without a name", m.Section)
			}
		}
	})
}

func TestExpectMD5(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "synthesis.hdlist.cz")
	if err := os.WriteFile(good, []byte("synthesis bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	sums := map[string][16]byte{"synthesis.hdlist.cz": md5.Sum([]byte("synthesis bytes")), "other": md5.Sum([]byte("x"))}
	tests := []struct {
		name    string
		listed  string
		wantOK  bool
		wantErr bool
	}{
		{"matches", "synthesis.hdlist.cz", true, false},
		{"other digest", "other", true, true},
		{"not listed", "hdlist.cz", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := urpmi.ExpectMD5(sums, tc.listed)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			if e.Key != "" || e.SHA256 != nil || e.Size != -1 {
				t.Errorf("expectation %+v must not be shareable", e)
			}
			f, err := os.Open(good)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := e.Check(f); (err != nil) != tc.wantErr {
				t.Errorf("Check = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
