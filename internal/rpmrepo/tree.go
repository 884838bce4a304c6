package rpmrepo

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// Compression selects how synthesis.hdlist.cz is compressed.
type Compression int

const (
	// XZ is what genhdlist2 writes today (the default).
	XZ Compression = iota
	// Gzip is what older media carry.
	Gzip
)

// Options configure Build. Zero values mean the documented defaults.
type Options struct {
	// Packages to build; each lands in its Medium.
	Packages []Package
	// Key signs every rpm and is the media's pubkey; nil means a fresh
	// rsa2048 key.
	Key *Key
	// Version and Arch name the distrib tree, distrib/<Version>/<Arch>;
	// "" means "9" and "x86_64".
	Version, Arch string
	// Synthesis compression; the zero value is XZ.
	Synthesis Compression
	// Versioned, if not "", is a YYYYMMDD-HHMMSS stamp: each medium also gets
	// the immutable copy media_info/<Versioned>-synthesis.hdlist.cz, listed
	// in MD5SUM.
	Versioned string
	// NoRepodata skips createrepo_c.
	NoRepodata bool
	// SignRepomd writes repodata/repomd.xml.asc, a detached signature by Key
	// (Mageia does not sign repomd.xml; Fedora-style repositories do).
	SignRepomd bool
}

// Tree is a built repository tree.
type Tree struct {
	// Dir is the document root: serve it over HTTP and the tree's URLs are
	// /<Prefix>/media/...
	Dir string
	// Prefix is the slash path from Dir to the distrib root,
	// "distrib/<version>/<arch>".
	Prefix string
	// Media in order of first appearance in Options.Packages.
	Media []*Medium
	// Key signed every rpm.
	Key *Key
	// MediaCfg is the content of <Prefix>/media/media_info/media.cfg.
	MediaCfg []byte
}

// Medium is one urpmi medium, which is also an rpm-md repository.
type Medium struct {
	// Path is the medium's path under media/, e.g. "core/release"; it is the
	// medium's section name in media.cfg.
	Path string
	// Name is its media.cfg name=, e.g. "Core Release".
	Name string
	// Dir is the medium directory on disk.
	Dir string
	// URLPath is the medium directory's slash path below Tree.Dir.
	URLPath string
	// Packages in build order.
	Packages []*Built
	// Synthesis is the bytes of media_info/synthesis.hdlist.cz and
	// SynthesisPlain the same, uncompressed.
	Synthesis, SynthesisPlain []byte
	// MD5SUM is the bytes of media_info/MD5SUM.
	MD5SUM []byte
}

// Built is one built and signed rpm in a tree.
type Built struct {
	Package
	// NEVRA is name-version-release.arch.
	NEVRA string
	// File is the rpm's path on disk; URLPath its slash path below Tree.Dir.
	File, URLPath string
	// Size is the file's exact length and SHA256 its whole-file digest.
	Size   int64
	SHA256 []byte
	// PayloadSHA256 is the header's PAYLOADDIGEST as rpm reports it (hex).
	PayloadSHA256 string
}

// Build builds, signs and lays out the packages of o, writes the urpmi and
// rpm-md metadata, and returns the tree. It fails the test on any error.
func Build(t testing.TB, o Options) *Tree {
	t.Helper()
	if o.Key == nil {
		o.Key = NewKey(t, "")
	}
	if o.Version == "" {
		o.Version = "9"
	}
	if o.Arch == "" {
		o.Arch = "x86_64"
	}
	tr := &Tree{
		Dir:    t.TempDir(),
		Prefix: path.Join("distrib", o.Version, o.Arch),
		Key:    o.Key,
	}
	root := filepath.Join(tr.Dir, filepath.FromSlash(tr.Prefix))
	media := map[string]*Medium{}
	for _, p := range o.Packages {
		p = p.withDefaults()
		m := media[p.Medium]
		if m == nil {
			m = &Medium{
				Path:    p.Medium,
				Name:    mediumName(p.Medium),
				Dir:     filepath.Join(root, "media", filepath.FromSlash(p.Medium)),
				URLPath: path.Join(tr.Prefix, "media", p.Medium),
			}
			if err := os.MkdirAll(filepath.Join(m.Dir, "media_info"), 0o755); err != nil {
				t.Fatal(err)
			}
			media[p.Medium] = m
			tr.Media = append(tr.Media, m)
		}
		src := BuildRPM(t, p)
		Sign(t, o.Key, src)
		b := &Built{Package: p, NEVRA: p.NEVRA()}
		b.File = filepath.Join(m.Dir, b.NEVRA+".rpm")
		b.URLPath = path.Join(m.URLPath, b.NEVRA+".rpm")
		CopyFile(t, src, b.File)
		data, err := os.ReadFile(b.File)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		b.Size, b.SHA256 = int64(len(data)), sum[:]
		b.PayloadSHA256 = Query(t, b.File, "%{PAYLOADDIGEST}")
		m.Packages = append(m.Packages, b)
	}
	for _, m := range tr.Media {
		writeMediumInfo(t, o, m)
		if !o.NoRepodata {
			run(t, nil, need(t, "createrepo_c"), "--quiet", "--no-database", m.Dir)
			if o.SignRepomd {
				repomd, err := os.ReadFile(filepath.Join(m.Dir, "repodata", "repomd.xml"))
				if err != nil {
					t.Fatal(err)
				}
				asc := o.Key.DetachSign(t, repomd)
				if err := os.WriteFile(filepath.Join(m.Dir, "repodata", "repomd.xml.asc"), asc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	tr.MediaCfg = mediaCfg(o, tr.Media)
	gdir := filepath.Join(root, "media", "media_info")
	if err := os.MkdirAll(gdir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(gdir, "media.cfg"), tr.MediaCfg)
	writeFile(t, filepath.Join(gdir, "pubkey"), o.Key.Armored)
	return tr
}

// Package returns the built package with the given NEVRA, or nil.
func (tr *Tree) Package(nevra string) *Built {
	for _, m := range tr.Media {
		for _, b := range m.Packages {
			if b.NEVRA == nevra {
				return b
			}
		}
	}
	return nil
}

// mediumName turns "core/release" into "Core Release".
func mediumName(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if s != "" {
			parts[i] = strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return strings.Join(parts, " ")
}

// writeMediumInfo writes media_info/{synthesis.hdlist.cz,MD5SUM,pubkey}.
func writeMediumInfo(t testing.TB, o Options, m *Medium) {
	t.Helper()
	var plain bytes.Buffer
	for _, b := range m.Packages {
		plain.WriteString(synthesisEntry(t, b))
	}
	m.SynthesisPlain = plain.Bytes()
	var z bytes.Buffer
	switch o.Synthesis {
	case Gzip:
		w := gzip.NewWriter(&z)
		w.Write(m.SynthesisPlain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		w, err := xz.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(m.SynthesisPlain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m.Synthesis = z.Bytes()
	info := filepath.Join(m.Dir, "media_info")
	files := map[string][]byte{"synthesis.hdlist.cz": m.Synthesis}
	if o.Versioned != "" {
		files[o.Versioned+"-synthesis.hdlist.cz"] = m.Synthesis
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var sums bytes.Buffer
	for _, n := range names {
		writeFile(t, filepath.Join(info, n), files[n])
		// md5sum(1) output: digest, two spaces, file name.
		fmt.Fprintf(&sums, "%x  %s\n", md5.Sum(files[n]), n)
	}
	m.MD5SUM = sums.Bytes()
	writeFile(t, filepath.Join(info, "MD5SUM"), m.MD5SUM)
	writeFile(t, filepath.Join(info, "pubkey"), o.Key.Armored)
}

// synthesisEntry is the synthesis block for one rpm, in the order
// perl-URPM's build_synthesis writes it, from what rpm reports.
func synthesisEntry(t testing.TB, b *Built) string {
	t.Helper()
	var s strings.Builder
	deps := func(tag, format string) {
		var items []string
		for _, line := range strings.Split(Query(t, b.File, format), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "rpmlib(") {
				continue
			}
			items = append(items, synthesisDep(line))
		}
		if len(items) > 0 {
			s.WriteString("@" + tag + "@" + strings.Join(items, "@") + "\n")
		}
	}
	deps("provides", "[%{PROVIDENEVRS}\n]")
	deps("conflicts", "[%{CONFLICTNEVRS}\n]")
	deps("obsoletes", "[%{OBSOLETENEVRS}\n]")
	deps("requires", "[%{REQUIRENEVRS}\n]")
	s.WriteString("@summary@" + strings.TrimSpace(Query(t, b.File, "%{SUMMARY}")) + "\n")
	fmt.Fprintf(&s, "@filesize@%d\n", b.Size)
	f := strings.Split(Query(t, b.File, "%{EPOCH}\x1f%{SIZE}\x1f%{GROUP}"), "\x1f")
	if len(f) != 3 {
		t.Fatalf("rpmrepo: unexpected rpm query output %q for %s", f, b.File)
	}
	fmt.Fprintf(&s, "@info@%s@%d@%d@%s\n", b.NEVRA, atoiOrZero(f[0]), atoiOrZero(f[1]), f[2])
	return s.String()
}

// synthesisDep turns rpm's "name >= 1.0-1" into synthesis' "name[>= 1.0-1]"
// ("=" becomes "==").
func synthesisDep(s string) string {
	f := strings.Fields(s)
	if len(f) != 3 {
		return s
	}
	op := f[1]
	if op == "=" {
		op = "=="
	}
	return f[0] + "[" + op + " " + f[2] + "]"
}

// mediaCfg renders media.cfg the way Mageia's tree has it.
func mediaCfg(o Options, media []*Medium) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "[media_info]\nversion=%s\nmediacfg_version=2\nbranch=Official\narch=%s\nxml-info=1\n", o.Version, o.Arch)
	for _, m := range media {
		rel := "../../media/" + m.Path + "/media_info/"
		typ := m.Path
		if i := strings.LastIndex(typ, "/"); i >= 0 {
			typ = typ[i+1:]
		}
		fmt.Fprintf(&b, "\n[%s]\nhdlist=%shdlist.cz\nsynthesis=%ssynthesis.hdlist.cz\npubkey=%spubkey\nname=%s\nmedia_type=%s\n",
			m.Path, rel, rel, rel, m.Name, typ)
		if typ != "release" {
			b.WriteString("noauto=1\n")
		}
	}
	return b.Bytes()
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
}
