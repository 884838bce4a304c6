package packaging

import (
	"bytes"
	"compress/gzip"
	"context"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the "rpm" packager
)

//go:embed files
var assets embed.FS

// Options says what to build. Zero values mean the defaults at each field.
type Options struct {
	// SourceDir is the root of the pkgswarm main module (holding
	// cmd/pkgswarm). Required.
	SourceDir string
	// OutDir receives the packages; created if missing. Required.
	OutDir string
	// Version is the package version, e.g. "0.3.1" (a leading "v" is
	// dropped). "" means the source commit's tag, else "0.0.0~dev+g<commit>"
	// (see sourceVersion). It is stamped into the binary (-X main.version).
	Version string
	// Arch is the Go architecture to build for; "" means runtime.GOARCH.
	Arch string
	// Formats lists the packages to build, "deb" and/or "rpm"; nil means both.
	Formats []string
	// Overlay, when set, is passed to go build as -overlay (a JSON file
	// replacing source files for this build only).
	Overlay string
	// MTime stamps every file; zero means SOURCE_DATE_EPOCH when set, else
	// the time of SourceDir's last git commit, else now. The first two make
	// the packages reproducible.
	MTime time.Time
	// Maintainer is the packages' maintainer, "Name <address>"; "" means
	// DefaultMaintainer.
	Maintainer string
}

// DefaultMaintainer is the maintainer of packages built without
// Options.Maintainer. Builders who publish packages set their own.
const DefaultMaintainer = "pkgswarm project <pkgswarm@users.noreply.github.com>"

// Build compiles pkgswarm (CGO_ENABLED=0, -trimpath), generates its man
// page, default config and shell completions from the binary, and writes
// one package per format to o.OutDir. It returns the package paths.
func Build(ctx context.Context, o Options) ([]string, error) {
	if o.SourceDir == "" || o.OutDir == "" {
		return nil, errors.New("packaging: Options.SourceDir and Options.OutDir are required")
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Version == "" {
		o.Version = sourceVersion(ctx, o.SourceDir)
	}
	o.Version = strings.TrimPrefix(o.Version, "v")
	if o.Formats == nil {
		o.Formats = []string{"deb", "rpm"}
	}
	if o.Maintainer == "" {
		o.Maintainer = DefaultMaintainer
	}
	if o.MTime.IsZero() {
		o.MTime = sourceTime(ctx, o.SourceDir)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "pkgswarm-packaging-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	bin := filepath.Join(work, "pkgswarm")
	if err := goBuild(ctx, o, o.Arch, bin); err != nil {
		return nil, err
	}
	// The documents come from running the binary: build one for this
	// machine when cross-building.
	docBin := bin
	if o.Arch != runtime.GOARCH {
		docBin = filepath.Join(work, "pkgswarm-host")
		if err := goBuild(ctx, o, runtime.GOARCH, docBin); err != nil {
			return nil, err
		}
	}
	gen := map[string][]string{
		"pkgswarm.8":      {"gendoc", "man"},
		"pkgswarm.toml":   {"gendoc", "config"},
		"completion.bash": {"completion", "bash"},
		"completion.zsh":  {"completion", "zsh"},
	}
	for name, args := range gen {
		out, err := runOutput(ctx, docBin, args...)
		if err != nil {
			return nil, fmt.Errorf("packaging: generating %s with `pkgswarm %s`: %w (does cmd/pkgswarm register the operator commands?)", name, strings.Join(args, " "), err)
		}
		if err := os.WriteFile(filepath.Join(work, name), out, 0o644); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"pkgswarm.8", "changelog.Debian"} {
		var data []byte
		if name == "changelog.Debian" {
			data = []byte(debianChangelog(o.Version, o.Maintainer, o.MTime))
		} else if data, err = os.ReadFile(filepath.Join(work, name)); err != nil {
			return nil, err
		}
		if err := writeGzip(filepath.Join(work, name+".gz"), data, o.MTime); err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"pkgswarm.service", "postinstall.sh", "preremove.sh", "postremove.sh", "copyright", "lintian-overrides"} {
		data, err := assets.ReadFile("files/" + name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return nil, err
		}
	}

	var built []string
	for _, format := range o.Formats {
		info := packageInfo(o, work, format)
		pkger, err := nfpm.Get(format)
		if err != nil {
			return nil, fmt.Errorf("packaging: %w (want deb or rpm)", err)
		}
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", format, err)
		}
		target := filepath.Join(o.OutDir, pkger.ConventionalFileName(info))
		info.Target = target
		var buf bytes.Buffer
		if err := pkger.Package(info, &buf); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", format, err)
		}
		if err := os.WriteFile(target, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		built = append(built, target)
	}
	return built, nil
}

// packageInfo describes the package for one format; the files are in work.
func packageInfo(o Options, work, format string) *nfpm.Info {
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: filepath.Join(work, src), Destination: dst,
			FileInfo: &files.ContentFileInfo{Mode: mode, MTime: o.MTime}}
	}
	unitDir, zshDir := "/lib/systemd/system", "/usr/share/zsh/vendor-completions"
	if format == "rpm" {
		unitDir, zshDir = "/usr/lib/systemd/system", "/usr/share/zsh/site-functions"
	}
	contents := files.Contents{
		file("pkgswarm", "/usr/bin/pkgswarm", 0o755),
		file("pkgswarm.service", unitDir+"/pkgswarm.service", 0o644),
		file("pkgswarm.8.gz", "/usr/share/man/man8/pkgswarm.8.gz", 0o644),
		file("completion.bash", "/usr/share/bash-completion/completions/pkgswarm", 0o644),
		file("completion.zsh", zshDir+"/_pkgswarm", 0o644),
		{Source: filepath.Join(work, "pkgswarm.toml"), Destination: "/etc/pkgswarm/pkgswarm.toml", Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: o.MTime}},
	}
	if format == "deb" {
		contents = append(contents,
			file("copyright", "/usr/share/doc/pkgswarm/copyright", 0o644),
			file("changelog.Debian.gz", "/usr/share/doc/pkgswarm/changelog.Debian.gz", 0o644),
			file("lintian-overrides", "/usr/share/lintian/overrides/pkgswarm", 0o644),
		)
	}
	info := &nfpm.Info{
		Name:    "pkgswarm",
		Arch:    o.Arch,
		Version: o.Version,
		// Debian versions like 0.0.0~dev must pass through as they are.
		VersionSchema: "none",
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    o.Maintainer,
		Description: "caching proxy for apt, urpmi and dnf backed by LAN peers and a swarm\n" +
			"pkgswarm answers package managers from its cache, from other pkgswarm\n" +
			"nodes on the LAN, from a BitTorrent swarm, and from the origin mirror,\n" +
			"and verifies every byte against the repository's signed metadata\n" +
			"before it is cached, shared or completed to a client.",
		License: "Apache-2.0",
		MTime:   o.MTime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Umask:    0o022,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(work, "postinstall.sh"),
				PreRemove:   filepath.Join(work, "preremove.sh"),
				PostRemove:  filepath.Join(work, "postremove.sh"),
			},
			RPM: nfpm.RPM{Group: "System Environment/Daemons", Summary: "caching proxy for apt, urpmi and dnf backed by LAN peers and a swarm",
				Compression: "gzip", BuildHost: "pkgswarm"},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
	if format == "rpm" {
		info.RPM.Arch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "arm": "armv7hl", "ppc64le": "ppc64le", "riscv64": "riscv64", "s390x": "s390x"}[o.Arch]
	} else {
		info.Deb.Arch = map[string]string{"386": "i386", "arm": "armhf", "ppc64le": "ppc64el"}[o.Arch]
	}
	return nfpm.WithDefaults(info)
}

// sourceVersion is the version of the source in dir when none is given:
// its tag when the commit is tagged (v0.3.1 → 0.3.1), else
// 0.0.0~dev+g<commit> (a version that sorts before any release), else
// 0.0.0~dev outside a git checkout. It is stamped into the binary
// (pkgswarm --version) and names the packages.
func sourceVersion(ctx context.Context, dir string) string {
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if tag := git("describe", "--tags", "--exact-match", "--match", "v[0-9]*"); tag != "" {
		return strings.TrimPrefix(tag, "v")
	}
	if rev := git("rev-parse", "--short=12", "HEAD"); rev != "" {
		return "0.0.0~dev+g" + rev
	}
	return "0.0.0~dev"
}

// sourceTime is SOURCE_DATE_EPOCH, else the time of dir's last commit,
// else now.
func sourceTime(ctx context.Context, dir string) time.Time {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
		cmd.Dir = dir
		if out, err := cmd.Output(); err == nil {
			s = strings.TrimSpace(string(out))
		}
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil && sec > 0 {
		return time.Unix(sec, 0).UTC()
	}
	return time.Now().UTC().Truncate(time.Second)
}

// goBuild builds cmd/pkgswarm of o.SourceDir for goarch into out.
func goBuild(ctx context.Context, o Options, goarch, out string) error {
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=" + o.Version, "-o", out}
	if o.Overlay != "" {
		args = append(args, "-overlay", o.Overlay)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/pkgswarm")...)
	cmd.Dir = o.SourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging: go build ./cmd/pkgswarm in %s for %s: %w\n%s", o.SourceDir, goarch, err, b)
	}
	return nil
}

func runOutput(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// writeGzip writes data gzipped at maximum compression with no name and a
// fixed time in the header, as Debian policy (gzip -9n) asks.
func writeGzip(file string, data []byte, mtime time.Time) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.ModTime = mtime
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

// debianChangelog is the one-entry changelog a Debian binary package
// carries.
func debianChangelog(version, maintainer string, when time.Time) string {
	return fmt.Sprintf("pkgswarm (%s-1) unstable; urgency=medium\n\n"+
		"  * Package built from the pkgswarm sources.\n\n"+
		" -- %s  %s\n",
		version, maintainer, when.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}
