package testrepo

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"golang.org/x/sync/errgroup"
)

// Options describes a repository to build. Zero values mean the defaults
// given at each field.
type Options struct {
	Suite     string // "" means "stable"
	Codename  string // "" means the suite
	Component string // "" means "main"
	Arch      string // "" means "amd64"
	Origin    string // Release Origin and Label; "" means "pkgswarm-test"
	// Packages are built into the pool and listed in the index.
	Packages []Package
	// Key signs the repository. nil means a new key: for Build one cleaned
	// up with the test, for BuildDir one that Repo.Close stops.
	Key *Key
	// NoByHash turns off by-hash: no by-hash/SHA256 copies of the indexes and
	// no "Acquire-By-Hash: yes" in Release. By-hash is on by default.
	NoByHash bool
	// Compressions lists the Packages variants written to disk: "" (plain),
	// ".gz", ".xz". nil means all three. Release always lists the plain
	// file's digests, as Debian's Release does even where the mirror lacks
	// the plain file.
	Compressions []string
	// ValidUntil, when positive, adds Valid-Until: Date + ValidUntil.
	ValidUntil time.Duration
	// Date is the Release Date; zero means now. Resign never lets the date
	// stand still or go back: it is at least one second after the last one.
	Date time.Time
	// NoInRelease leaves out InRelease; NoReleaseGPG leaves out Release.gpg.
	// Both are signed by default.
	NoInRelease, NoReleaseGPG bool
}

// IndexFile is one file listed in Release, relative to dists/<suite>.
type IndexFile struct {
	Path   string // e.g. "main/binary-amd64/Packages.xz"
	Size   int64
	SHA256 string // lower-case hex
	MD5    string // lower-case hex
	// OnDisk is false for the plain Packages when "" is not among the
	// compressions: listed in Release, absent from the mirror.
	OnDisk bool
}

// Repo is a signed apt repository on disk. Its methods are not safe for
// concurrent use; an Origin may serve Dir while Resign runs, because every
// file is replaced by rename.
type Repo struct {
	// Dir is the repository root, the URL apt's sources.list names.
	Dir                              string
	Suite, Codename, Component, Arch string
	// Key signs Release, InRelease and Release.gpg.
	Key *Key
	// Debs maps a package name to its most recently added .deb.
	Debs map[string]DebInfo
	// All lists every .deb in the pool (all versions), in the order added.
	All []DebInfo
	// Indexes maps each file Release lists (path relative to
	// dists/<suite>) to its size and digests.
	Indexes map[string]IndexFile
	// Date is the current Release's Date.
	Date time.Time
	// Release is the text of the current (unsigned) Release file.
	Release string

	opts     Options
	keyDir   string // made by BuildDir for ownedKey; removed by Close
	ownedKey *Key   // made by BuildDir when Options.Key was nil
}

// Build builds a signed repository in a temporary directory removed when the
// test ends, failing the test on error. It skips the test when gpg or
// dpkg-deb is missing.
func Build(t testing.TB, opts Options) *Repo {
	t.Helper()
	RequireTools(t, "gpg", "gpgconf", "dpkg-deb")
	if opts.Key == nil {
		opts.Key = NewKey(t, "testrepo")
	}
	r, err := BuildDir(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatalf("testrepo: %v", err)
	}
	return r
}

// BuildDir builds a signed repository in dir (created if missing): the
// non-test variant for benchmarks and scripts. When opts.Key is nil it makes
// a key, which Close stops.
func BuildDir(dir string, opts Options) (*Repo, error) {
	opts = opts.withDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build repository %s: %w", dir, err)
	}
	r := &Repo{
		Dir:       abs,
		Suite:     opts.Suite,
		Codename:  opts.Codename,
		Component: opts.Component,
		Arch:      opts.Arch,
		Key:       opts.Key,
		Debs:      map[string]DebInfo{},
		Indexes:   map[string]IndexFile{},
		opts:      opts,
	}
	if r.Key == nil {
		keyDir, err := os.MkdirTemp("", "testrepo-key-")
		if err != nil {
			return nil, fmt.Errorf("build repository %s: %w", dir, err)
		}
		r.keyDir = keyDir
		if r.Key, err = NewKeyDir(keyDir, "testrepo"); err != nil {
			os.RemoveAll(keyDir)
			return nil, fmt.Errorf("build repository %s: %w", dir, err)
		}
		r.ownedKey = r.Key
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		r.Close()
		return nil, fmt.Errorf("build repository %s: %w", dir, err)
	}
	if err := r.Add(opts.Packages...); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Resign(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (o Options) withDefaults() Options {
	o.Suite = cmp.Or(o.Suite, "stable")
	o.Codename = cmp.Or(o.Codename, o.Suite)
	o.Component = cmp.Or(o.Component, "main")
	o.Arch = cmp.Or(o.Arch, "amd64")
	o.Origin = cmp.Or(o.Origin, "pkgswarm-test")
	if o.Compressions == nil {
		o.Compressions = []string{"", ".gz", ".xz"}
	}
	return o
}

// Close stops the gpg-agent of, and removes, the key BuildDir made when
// Options.Key was nil. The repository files stay. A key passed in Options
// is the caller's to close.
func (r *Repo) Close() error {
	if r.keyDir == "" {
		return nil
	}
	err := r.ownedKey.Close()
	if rerr := os.RemoveAll(r.keyDir); rerr != nil && err == nil {
		err = rerr
	}
	r.keyDir = ""
	return err
}

// Path returns the absolute path of rel (slash-separated, relative to the
// repository root).
func (r *Repo) Path(rel string) string { return filepath.Join(r.Dir, filepath.FromSlash(rel)) }

// DistPath returns the slash path, relative to the repository root, of a
// file under dists/<suite>: DistPath("InRelease") is "dists/stable/InRelease".
func (r *Repo) DistPath(rel string) string { return path.Join("dists", r.Suite, rel) }

// PackagesPath is the slash path, relative to the repository root, of the
// Packages index with the given suffix ("", ".gz", ".xz").
func (r *Repo) PackagesPath(suffix string) string {
	return r.DistPath(r.Component + "/binary-" + r.Arch + "/Packages" + suffix)
}

// Add builds the packages into the pool (in parallel, one dpkg-deb per
// CPU) and records them, in the order given. A package with the same pool
// path as an earlier one replaces it. The index and Release are not
// touched: call Resign to publish them.
func (r *Repo) Add(pkgs ...Package) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pkgs = slices.Clone(pkgs) // defaults are filled in below; the caller's slice stays as it is
	infos := make([]DebInfo, len(pkgs))
	seen := map[string]int{}
	for i, p := range pkgs {
		p = p.withDefaults(r.Arch)
		if err := p.validate(); err != nil {
			return fmt.Errorf("add package to %s: %w", r.Dir, err)
		}
		rel := debPoolPath(r.Component, p)
		if j, dup := seen[rel]; dup {
			return fmt.Errorf("add packages to %s: packages %d and %d both build %s", r.Dir, j, i, rel)
		}
		seen[rel] = i
		pkgs[i] = p
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, p := range pkgs {
		g.Go(func() error {
			rel := debPoolPath(r.Component, p)
			abs := r.Path(rel)
			if err := BuildDeb(gctx, p, abs); err != nil {
				return err
			}
			if err := os.Chtimes(abs, debTime, debTime); err != nil {
				return fmt.Errorf("add package %s: %w", p.Name, err)
			}
			d, err := ScanDeb(gctx, abs, rel)
			if err != nil {
				return err
			}
			infos[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, d := range infos {
		r.All = slices.DeleteFunc(r.All, func(o DebInfo) bool { return o.Path == d.Path })
		r.All = append(r.All, d)
		r.Debs[d.Name] = d
	}
	return nil
}

// ResignOption changes one Resign.
type ResignOption func(*resign)

type resign struct {
	date       time.Time
	validUntil time.Duration
	key        *Key
}

// WithDate sets the new Release's Date (still at least one second after the
// previous one).
func WithDate(d time.Time) ResignOption { return func(r *resign) { r.date = d } }

// WithValidUntil sets Valid-Until to Date + d for this and later Resigns
// (d <= 0 removes it).
func WithValidUntil(d time.Duration) ResignOption {
	return func(r *resign) { r.validUntil = d }
}

// WithKey signs with k instead of r.Key, for this and later Resigns (key
// rotation, or a repository signed by a key the client does not trust).
func WithKey(k *Key) ResignOption { return func(r *resign) { r.key = k } }

// Resign rewrites the Packages indexes (and their by-hash copies) from
// r.All, then Release, InRelease and Release.gpg with a Date later than the
// previous one. Files are replaced by rename, so a concurrent reader sees
// either the old or the new file. Old by-hash copies stay, as on a mirror.
func (r *Repo) Resign(opts ...ResignOption) error {
	rs := resign{date: r.opts.Date, validUntil: r.opts.ValidUntil, key: r.Key}
	if !r.Date.IsZero() {
		rs.date = time.Time{} // Options.Date applies to the first signing only
	}
	for _, o := range opts {
		o(&rs)
	}
	r.opts.ValidUntil, r.Key = rs.validUntil, rs.key
	date := rs.date
	if date.IsZero() {
		date = time.Now()
	}
	date = date.UTC().Truncate(time.Second)
	if !r.Date.IsZero() && !date.After(r.Date) {
		date = r.Date.Add(time.Second)
	}

	if err := r.writePackages(date); err != nil {
		return err
	}
	if err := r.writeComponentRelease(date); err != nil {
		return err
	}
	release := r.releaseText(date)
	dists := r.Path(r.DistPath(""))
	tmpRelease := filepath.Join(dists, ".Release.new")
	if err := os.WriteFile(tmpRelease, []byte(release), 0o644); err != nil {
		return fmt.Errorf("write Release of %s: %w", r.Dir, err)
	}
	defer os.Remove(tmpRelease)
	type signed struct {
		name string
		skip bool
		sign func(in, out string) error
	}
	for _, s := range []signed{
		{"Release.gpg", r.opts.NoReleaseGPG, r.Key.DetachSign},
		{"InRelease", r.opts.NoInRelease, r.Key.ClearSign},
	} {
		final := filepath.Join(dists, s.name)
		if s.skip {
			if err := os.Remove(final); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("remove %s: %w", final, err)
			}
			continue
		}
		tmp := filepath.Join(dists, "."+s.name+".new")
		if err := s.sign(tmpRelease, tmp); err != nil {
			return fmt.Errorf("sign repository %s: %w", r.Dir, err)
		}
		if err := publish(tmp, final, date); err != nil {
			return err
		}
	}
	// Release last but one and InRelease last: a client that reads the new
	// InRelease finds every file it lists already in place.
	if err := copyFile(tmpRelease, filepath.Join(dists, ".Release.pub")); err != nil {
		return err
	}
	if err := publish(filepath.Join(dists, ".Release.pub"), filepath.Join(dists, "Release"), date); err != nil {
		return err
	}
	r.Date, r.Release = date, release
	return nil
}

// writePackages writes the Packages index variants and their by-hash copies
// and records them in r.Indexes.
func (r *Repo) writePackages(date time.Time) error {
	var b bytes.Buffer
	debs := slices.Clone(r.All)
	slices.SortStableFunc(debs, func(a, b DebInfo) int { return strings.Compare(a.Name, b.Name) })
	for _, d := range debs {
		if d.Arch != r.Arch && d.Arch != "all" {
			continue
		}
		b.WriteString(d.Stanza.String())
		b.WriteByte('\n')
	}
	plain := b.Bytes()
	dirRel := r.Component + "/binary-" + r.Arch
	for _, suffix := range []string{"", ".gz", ".xz"} {
		data, err := compress(plain, suffix)
		if err != nil {
			return fmt.Errorf("compress Packages%s of %s: %w", suffix, r.Dir, err)
		}
		onDisk := slices.Contains(r.opts.Compressions, suffix)
		rel := dirRel + "/Packages" + suffix
		if onDisk || suffix == "" {
			r.Indexes[rel] = indexFile(rel, data, onDisk)
		} else {
			delete(r.Indexes, rel)
		}
		if !onDisk {
			continue
		}
		if err := r.writeIndex(rel, data, date); err != nil {
			return err
		}
	}
	return nil
}

// writeComponentRelease writes <component>/binary-<arch>/Release, as
// Debian's archive has.
func (r *Repo) writeComponentRelease(date time.Time) error {
	p := Paragraph{
		{"Archive", r.Suite},
		{"Origin", r.opts.Origin},
		{"Label", r.opts.Origin},
		{"Component", r.Component},
		{"Architecture", r.Arch},
	}
	rel := r.Component + "/binary-" + r.Arch + "/Release"
	data := []byte(p.String())
	r.Indexes[rel] = indexFile(rel, data, true)
	return r.writeIndex(rel, data, date)
}

// writeIndex writes one index file under dists/<suite> (and its by-hash
// copy) by rename, with mtime date.
func (r *Repo) writeIndex(rel string, data []byte, date time.Time) error {
	final := r.Path(r.DistPath(rel))
	if err := writeFileAtomic(final, data, date); err != nil {
		return err
	}
	if r.opts.NoByHash {
		return nil
	}
	sum := sha256.Sum256(data)
	byHash := filepath.Join(filepath.Dir(final), "by-hash", "SHA256", hex.EncodeToString(sum[:]))
	if _, err := os.Stat(byHash); err == nil {
		return nil // content-addressed: already there, never rewritten
	}
	return writeFileAtomic(byHash, data, date)
}

func indexFile(rel string, data []byte, onDisk bool) IndexFile {
	s, m := sha256.Sum256(data), md5.Sum(data)
	return IndexFile{Path: rel, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:]), MD5: hex.EncodeToString(m[:]), OnDisk: onDisk}
}

// releaseText renders Release in the field order of Debian's archive (and
// of dpkg's CTRL_REPO_RELEASE), with checksum lines formatted as
// apt-ftparchive writes them.
func (r *Repo) releaseText(date time.Time) string {
	const dateFmt = "Mon, 02 Jan 2006 15:04:05 UTC"
	p := Paragraph{
		{"Origin", r.opts.Origin},
		{"Label", r.opts.Origin},
		{"Suite", r.Suite},
		{"Codename", r.Codename},
		{"Date", date.Format(dateFmt)},
	}
	if r.opts.ValidUntil > 0 {
		p = append(p, Field{"Valid-Until", date.Add(r.opts.ValidUntil).Format(dateFmt)})
	}
	if !r.opts.NoByHash {
		p = append(p, Field{"Acquire-By-Hash", "yes"})
	}
	p = append(p,
		Field{"Architectures", r.Arch},
		Field{"Components", r.Component},
		Field{"Description", "pkgswarm test repository"},
	)
	names := make([]string, 0, len(r.Indexes))
	for n := range r.Indexes {
		names = append(names, n)
	}
	slices.Sort(names)
	var md, sh strings.Builder
	for _, n := range names {
		f := r.Indexes[n]
		fmt.Fprintf(&md, "\n %s %16d %s", f.MD5, f.Size, f.Path)
		fmt.Fprintf(&sh, "\n %s %16d %s", f.SHA256, f.Size, f.Path)
	}
	p = append(p, Field{"MD5Sum", md.String()}, Field{"SHA256", sh.String()})
	return p.String()
}

func compress(data []byte, suffix string) ([]byte, error) {
	var b bytes.Buffer
	switch suffix {
	case "":
		return data, nil
	case ".gz":
		// Like gzip -9n: no name, no timestamp, so the bytes are reproducible.
		w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	case ".xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown compression %q (want \"\", \".gz\" or \".xz\")", suffix)
	}
	return b.Bytes(), nil
}

// writeFileAtomic writes data to a temporary file next to name and renames
// it into place, with modification time mtime.
func writeFileAtomic(name string, data []byte, mtime time.Time) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, werr)
	}
	return publish(tmp, name, mtime)
}

// publish sets tmp's permissions and mtime and renames it to final.
func publish(tmp, final string, mtime time.Time) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", final, err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publish %s: %w", final, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}
