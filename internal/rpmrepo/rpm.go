package rpmrepo

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Package describes one rpm to build.
type Package struct {
	// Name, Version and Release are the rpm's; "" Version means "1.0" and ""
	// Release means "1.mga9".
	Name, Version, Release string
	// Arch is the build architecture; "" means "noarch". Anything else is
	// passed to rpmbuild --target.
	Arch string
	// Epoch is written to the spec when > 0.
	Epoch int
	// Size is the length of the one payload file, /usr/share/<name>/data.bin;
	// its bytes are pseudo-random from Seed, so they do not compress.
	Size int
	// Seed makes the payload file's bytes; equal seeds give equal bytes.
	Seed uint64
	// Medium is the medium path under media/, e.g. "core/release" (the
	// default) or "nonfree/updates".
	Medium string
	// Group is the rpm Group; "" means "System/Base".
	Group string
	// Requires are extra Requires: lines, e.g. "bash >= 5".
	Requires []string
	// Payload is rpm's _binary_payload macro, e.g. "w9.xzdio" or
	// "w19.zstdio"; "" leaves rpmbuild's default.
	Payload string
}

func (p Package) withDefaults() Package {
	if p.Version == "" {
		p.Version = "1.0"
	}
	if p.Release == "" {
		p.Release = "1.mga9"
	}
	if p.Arch == "" {
		p.Arch = "noarch"
	}
	if p.Medium == "" {
		p.Medium = "core/release"
	}
	if p.Group == "" {
		p.Group = "System/Base"
	}
	return p
}

// NEVRA is the package's name-version-release.arch, as urpmi names it (no
// epoch) and as the rpm file is named.
func (p Package) NEVRA() string {
	p = p.withDefaults()
	return p.Name + "-" + p.Version + "-" + p.Release + "." + p.Arch
}

// BuildRPM builds p with rpmbuild in a fresh directory and returns the path
// of the unsigned rpm.
func BuildRPM(t testing.TB, p Package) string {
	t.Helper()
	p = p.withDefaults()
	rpmbuild := need(t, "rpmbuild")
	top := t.TempDir()
	for _, d := range []string{"SOURCES", "SPECS", "BUILD", "RPMS", "SRPMS", "tmp", "BUILDROOT"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := make([]byte, p.Size)
	rng := rand.NewChaCha8(seed32(p.Seed))
	_, _ = rng.Read(data)
	if err := os.WriteFile(filepath.Join(top, "SOURCES", "data.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var spec strings.Builder
	fmt.Fprintf(&spec, "Name: %s\nVersion: %s\nRelease: %s\n", p.Name, p.Version, p.Release)
	if p.Epoch > 0 {
		fmt.Fprintf(&spec, "Epoch: %d\n", p.Epoch)
	}
	fmt.Fprintf(&spec, "Summary: pkgswarm test package %s\nLicense: MIT\nGroup: %s\nSource0: data.bin\n", p.Name, p.Group)
	if p.Arch == "noarch" {
		spec.WriteString("BuildArch: noarch\n")
	}
	for _, r := range p.Requires {
		fmt.Fprintf(&spec, "Requires: %s\n", r)
	}
	fmt.Fprintf(&spec, "\n%%description\nTest payload of %d bytes from seed %d.\n", p.Size, p.Seed)
	fmt.Fprintf(&spec, "\n%%install\nmkdir -p %%{buildroot}/usr/share/%s\ncp %%{SOURCE0} %%{buildroot}/usr/share/%s/data.bin\n", p.Name, p.Name)
	fmt.Fprintf(&spec, "\n%%files\n/usr/share/%s/data.bin\n", p.Name)
	specPath := filepath.Join(top, "SPECS", p.Name+".spec")
	if err := os.WriteFile(specPath, []byte(spec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-bb", "--quiet",
		"--define", "_topdir " + top,
		"--define", "_tmppath " + filepath.Join(top, "tmp"),
		"--define", "__os_install_post %{nil}",
		"--define", "debug_package %{nil}",
		"--define", "_build_id_links none",
		"--define", "use_source_date_epoch_as_buildtime 1",
		"--define", "clamp_mtime_to_source_date_epoch 1",
		"--define", "_buildhost pkgswarm-test",
	}
	if p.Payload != "" {
		args = append(args, "--define", "_binary_payload "+p.Payload)
	}
	if p.Arch != "noarch" {
		args = append(args, "--target", p.Arch)
	}
	args = append(args, specPath)
	if _, err := runErr(nil, []string{"SOURCE_DATE_EPOCH=1700000000"}, rpmbuild, args...); err != nil {
		t.Fatalf("rpmrepo: build %s: %v", p.NEVRA(), err)
	}
	out := filepath.Join(top, "RPMS", p.Arch, p.NEVRA()+".rpm")
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("rpmrepo: rpmbuild made no %s: %v", out, err)
	}
	return out
}

func seed32(s uint64) [32]byte {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], s)
	copy(b[8:], "pkgswarm rpmrepo payload")
	return b
}

// Sign adds k's header signature to the rpm at path, in place, with
// rpmsign --addsign.
func Sign(t testing.TB, k *Key, path string) {
	t.Helper()
	args := append([]string{"--addsign"}, k.signArgs(t)...)
	run(t, nil, need(t, "rpmsign"), append(args, path)...)
}

// CopyFile copies src to dst (created or truncated, mode 0644).
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
}

// Resigned writes to dst a copy of the rpm src whose signatures are replaced
// by one made with k (rpmsign --delsign, then --addsign).
func Resigned(t testing.TB, src, dst string, k *Key) {
	t.Helper()
	Unsigned(t, src, dst)
	Sign(t, k, dst)
}

// Unsigned writes to dst a copy of the rpm src with every signature removed
// (rpmsign --delsign); the header and payload digests stay.
func Unsigned(t testing.TB, src, dst string) {
	t.Helper()
	CopyFile(t, src, dst)
	run(t, nil, need(t, "rpmsign"), "--delsign", dst)
}

// Tampered writes to dst a copy of the rpm src with one byte in the middle of
// its (compressed) payload flipped; headers and signatures are untouched.
func Tampered(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
	off, err := PayloadOffset(b)
	if err != nil {
		t.Fatalf("rpmrepo: %s: %v", src, err)
	}
	if off >= int64(len(b)) {
		t.Fatalf("rpmrepo: %s has an empty payload", src)
	}
	i := off + (int64(len(b))-off)/2
	b[i] ^= 0x40
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatalf("rpmrepo: %v", err)
	}
}

// PayloadOffset returns where the payload starts in rpm file bytes b: after
// the 96-byte lead, the signature header (padded to 8 bytes) and the main
// header. It is a minimal walk for the rig, independent of pkgswarm's parser.
func PayloadOffset(b []byte) (int64, error) {
	off := int64(96)
	for i := 0; i < 2; i++ {
		if int64(len(b)) < off+16 {
			return 0, fmt.Errorf("truncated header at offset %d", off)
		}
		if binary.BigEndian.Uint32(b[off:]) != 0x8eade801 {
			return 0, fmt.Errorf("no header magic at offset %d", off)
		}
		il := int64(binary.BigEndian.Uint32(b[off+8:]))
		dl := int64(binary.BigEndian.Uint32(b[off+12:]))
		off += 16 + 16*il + dl
		if i == 0 {
			off = (off + 7) &^ 7
		}
	}
	return off, nil
}

// Query runs rpm -qp --queryformat format on path and returns the output.
func Query(t testing.TB, path, format string) string {
	t.Helper()
	return string(run(t, nil, need(t, "rpm"), "-qp", "--nosignature", "--nodigest", "--queryformat", format, path))
}

// CheckSig runs rpmkeys --checksig on each path with the public keys of keys
// imported into a fresh rpm database, and reports for each path whether rpm
// found its digests and signatures OK (exit status 0 and a "signatures OK"
// verdict), together with rpm's output.
func CheckSig(t testing.TB, keys []*Key, paths ...string) (ok []bool, output []string) {
	t.Helper()
	rpmkeys := need(t, "rpmkeys")
	db := t.TempDir()
	for _, k := range keys {
		f := filepath.Join(t.TempDir(), "key.asc")
		if err := os.WriteFile(f, k.Armored, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, nil, rpmkeys, "--dbpath", db, "--import", f)
	}
	for _, p := range paths {
		out, err := runErr(nil, nil, rpmkeys, "--dbpath", db, "--checksig", p)
		good := err == nil && strings.Contains(string(out), "signatures OK")
		ok = append(ok, good)
		output = append(output, string(out)+errString(err))
	}
	return ok, output
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// atoiOrZero parses rpm's numeric query output, where "(none)" means 0.
func atoiOrZero(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
