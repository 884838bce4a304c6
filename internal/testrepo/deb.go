package testrepo

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// debEpoch is the timestamp of every file inside, and every ar member of, a
// built .deb (via SOURCE_DATE_EPOCH), so a Package always builds to the same
// bytes: 2023-06-10, Debian 12's release day.
const debEpoch = 1686355200

// Package describes a .deb to build. Its payload is one file,
// /usr/share/<Name>/payload.bin, of Size bytes drawn from a ChaCha8 stream
// seeded by Seed, so the same Package always gives the same .deb bytes and
// digests.
type Package struct {
	Name    string // required: a Debian package name (lower case, digits, +-.)
	Version string // "" means "1.0"
	Arch    string // "" means the repository's architecture; "all" is allowed
	Size    int    // payload bytes; 0 is allowed
	Seed    int64  // payload seed; packages with equal seeds and sizes share payloads
	// Depends is copied to the control file's Depends field when non-empty.
	Depends string
	// Compression is dpkg-deb's -Z: "none", "gzip" or "xz". "" means "none"
	// for payloads of 1 MiB and more (random bytes do not compress, and
	// compressing them only costs time) and "gzip" below.
	Compression string
}

// DebInfo is one built .deb as a repository lists it.
type DebInfo struct {
	Name, Version, Arch string
	// Path is the file's path relative to the repository root, with forward
	// slashes: the Packages file's Filename field.
	Path   string
	Size   int64
	SHA256 string // lower-case hex
	SHA1   string // lower-case hex
	MD5    string // lower-case hex
	// Stanza is the package's Packages paragraph, as dpkg-scanpackages
	// would write it.
	Stanza Paragraph
}

// FileName is the base name of the .deb, as apt stores it in its archives
// directory: <name>_<version>_<arch>.deb with ':' in the version written
// as "%3a".
func (d DebInfo) FileName() string { return filepath.Base(d.Path) }

// Payload returns the payload bytes of p, as BuildDeb writes them.
func (p Package) Payload() []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(p.Seed))
	copy(seed[8:], "pkgswarm-testrepo-payload")
	b := make([]byte, p.Size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

func (p Package) withDefaults(arch string) Package {
	if p.Version == "" {
		p.Version = "1.0"
	}
	if p.Arch == "" {
		p.Arch = arch
	}
	if p.Compression == "" {
		p.Compression = "gzip"
		if p.Size >= 1<<20 {
			p.Compression = "none"
		}
	}
	return p
}

func (p Package) validate() error {
	if p.Name == "" {
		return fmt.Errorf("package has no name")
	}
	for i, c := range p.Name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && strings.ContainsRune("+-.", c)
		if !ok {
			return fmt.Errorf("package name %q: must be lower-case letters, digits and + - . (not first)", p.Name)
		}
	}
	if p.Version == "" || strings.ContainsAny(p.Version, " /_\n") {
		return fmt.Errorf("package %s: version %q is empty or has a space, '/', '_' or newline", p.Name, p.Version)
	}
	if p.Arch == "" || strings.ContainsAny(p.Arch, " /_\n") {
		return fmt.Errorf("package %s: architecture %q is empty or has a space, '/', '_' or newline", p.Name, p.Arch)
	}
	if p.Size < 0 {
		return fmt.Errorf("package %s: negative payload size %d", p.Name, p.Size)
	}
	switch p.Compression {
	case "none", "gzip", "xz":
	default:
		return fmt.Errorf("package %s: compression %q is not none, gzip or xz", p.Name, p.Compression)
	}
	return nil
}

// debPoolPath is the pool path of a package relative to the repository root,
// as Debian lays it out: pool/<component>/<first letter>/<name>/<file>
// (lib* packages use four letters, as in Debian).
func debPoolPath(component string, p Package) string {
	prefix := p.Name[:1]
	if strings.HasPrefix(p.Name, "lib") && len(p.Name) > 3 {
		prefix = p.Name[:4]
	}
	// dpkg-name and apt write an epoch's ':' as "%3a" in file names.
	file := fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
	return strings.Join([]string{"pool", component, prefix, p.Name, file}, "/")
}

// BuildDeb builds p (defaults already applied) with dpkg-deb into the file
// out, creating its directory. It returns nothing but the file: ScanDeb
// reads it back as a repository would.
func BuildDeb(ctx context.Context, p Package, out string) error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("build .deb: %w", err)
	}
	work, err := os.MkdirTemp("", "testrepo-deb-")
	if err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	share := filepath.Join(root, "usr", "share", p.Name)
	if err := os.MkdirAll(share, 0o755); err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	if err := os.WriteFile(filepath.Join(share, "payload.bin"), p.Payload(), 0o644); err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(controlFile(p).String()), 0o644); err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("build .deb %s: %w", p.Name, err)
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Z"+p.Compression, "--build", root, out)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "SOURCE_DATE_EPOCH="+strconv.Itoa(debEpoch))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build .deb %s: dpkg-deb --build: %w: %s", p.Name, err, bytes.TrimSpace(b))
	}
	return nil
}

// controlFile is the DEBIAN/control of p. Installed-Size is what
// dpkg-gencontrol would compute: the payload's KiB, rounded up, plus one for
// each of the three directories (usr, usr/share, usr/share/<name>).
func controlFile(p Package) Paragraph {
	installed := (p.Size+1023)/1024 + 3
	c := Paragraph{
		{"Package", p.Name},
		{"Version", p.Version},
		{"Architecture", p.Arch},
		{"Maintainer", "pkgswarm test rig <testrepo@repo.example.invalid>"},
		{"Installed-Size", strconv.Itoa(installed)},
	}
	if p.Depends != "" {
		c = append(c, Field{"Depends", p.Depends})
	}
	c = append(c,
		Field{"Section", "misc"},
		Field{"Priority", "optional"},
		Field{"Description", fmt.Sprintf("test package %s\n %d payload bytes from seed %d.", p.Name, p.Size, p.Seed)},
	)
	return c
}

// packagesFieldOrder is the field order of a Packages stanza, from dpkg's
// Dpkg::Control::FieldsCore (CTRL_INDEX_PKG), which dpkg-scanpackages uses.
// Fields not listed follow in their control-file order.
var packagesFieldOrder = []string{
	"Package", "Package-Type", "Source", "Version", "Kernel-Version", "Built-For-Profiles",
	"Auto-Built-Package", "Architecture", "Subarchitecture", "Installer-Menu-Item",
	"Build-Essential", "Essential", "Protected", "Origin", "Bugs", "Maintainer", "Installed-Size",
	"Pre-Depends", "Depends", "Recommends", "Suggests", "Enhances", "Conflicts", "Breaks",
	"Replaces", "Provides", "Built-Using", "Static-Built-Using",
	"Filename", "Size", "MD5sum", "SHA1", "SHA256",
	"Section", "Priority", "Multi-Arch", "Homepage", "Description", "Tag", "Task",
}

// ScanDeb reads a .deb as dpkg-scanpackages does: its control fields (via
// dpkg-deb --field) plus Filename (filename, relative to the repository
// root), Size, MD5sum, SHA1 and SHA256, in dpkg-scanpackages' field order.
func ScanDeb(ctx context.Context, path, filename string) (DebInfo, error) {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--field", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return DebInfo{}, fmt.Errorf("read control of %s: dpkg-deb --field: %w: %s", path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	paras, err := ParseParagraphs(string(out))
	if err != nil || len(paras) != 1 {
		return DebInfo{}, fmt.Errorf("read control of %s: want one paragraph, got %d (%v)", path, len(paras), err)
	}
	control := paras[0]
	f, err := os.Open(path)
	if err != nil {
		return DebInfo{}, fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	sh, s1, m := sha256.New(), sha1.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(sh, s1, m), f)
	if err != nil {
		return DebInfo{}, fmt.Errorf("hash %s: %w", path, err)
	}
	d := DebInfo{
		Path:   filename,
		Size:   n,
		SHA256: hex.EncodeToString(sh.Sum(nil)),
		SHA1:   hex.EncodeToString(s1.Sum(nil)),
		MD5:    hex.EncodeToString(m.Sum(nil)),
	}
	d.Name, _ = control.Get("Package")
	d.Version, _ = control.Get("Version")
	d.Arch, _ = control.Get("Architecture")
	if d.Name == "" || d.Version == "" || d.Arch == "" {
		return DebInfo{}, fmt.Errorf("read control of %s: Package, Version or Architecture missing", path)
	}
	fields := append(slices.Clone(control),
		Field{"Filename", filename},
		Field{"Size", strconv.FormatInt(n, 10)},
		Field{"MD5sum", d.MD5},
		Field{"SHA1", d.SHA1},
		Field{"SHA256", d.SHA256},
	)
	d.Stanza = orderFields(fields, packagesFieldOrder)
	return d, nil
}

// orderFields returns p's fields in the given order (names compared
// case-insensitively), then the unlisted ones in their original order.
func orderFields(p Paragraph, order []string) Paragraph {
	out := make(Paragraph, 0, len(p))
	used := make([]bool, len(p))
	for _, name := range order {
		for i, f := range p {
			if !used[i] && strings.EqualFold(f.Name, name) {
				out = append(out, f)
				used[i] = true
			}
		}
	}
	for i, f := range p {
		if !used[i] {
			out = append(out, f)
		}
	}
	return out
}

// debTime is the modification time given to every built .deb file on disk,
// so an Origin's Last-Modified for it is stable too.
var debTime = time.Unix(debEpoch, 0)
