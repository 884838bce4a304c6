package aptenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Source is one sources.list line: deb [signed-by=Keyring] URL Suite
// Components...
type Source struct {
	URL        string   // repository root, e.g. origin.URL or a pkgswarm prefix URL
	Suite      string   // "" means "stable"
	Components []string // nil means {"main"}
	// Keyring is the only keyring apt trusts for this source (signed-by).
	// It must name a binary keyring ending in .gpg or an armored one ending
	// in .asc. Required: the client trusts no other key.
	Keyring string
}

// Line renders s as a one-line-style sources.list entry.
func (s Source) Line() string {
	suite := s.Suite
	if suite == "" {
		suite = "stable"
	}
	comps := s.Components
	if len(comps) == 0 {
		comps = []string{"main"}
	}
	return fmt.Sprintf("deb [signed-by=%s] %s %s %s", s.Keyring, s.URL, suite, strings.Join(comps, " "))
}

// Options configures a Client. Zero values mean the defaults at each field.
type Options struct {
	// Proxy is apt's Acquire::http::Proxy, e.g. "http://127.0.0.1:3142".
	// "" means no proxy (apt connects to each source directly).
	Proxy string
	// Sources are the repositories apt uses.
	Sources []Source
	// Arch is APT::Architecture; "" means "amd64".
	Arch string
	// Config holds extra apt.conf lines appended to the generated file,
	// e.g. `Acquire::http::Timeout "5";`.
	Config []string
	// AllowWarnings makes Update and Download accept "W:" lines in apt's
	// output. By default any warning is an error: apt reports a bad or
	// missing signature on update as a warning plus an error, and some
	// fetch failures as warnings only.
	AllowWarnings bool
}

// Client is an apt-get whose whole state lives under Dir: it never reads
// or writes the machine's own apt configuration, lists, cache or dpkg
// status. Methods may be called one at a time (apt's own locking is off).
type Client struct {
	// Dir holds the configuration, state and cache.
	Dir string
	// ConfigPath is the generated apt.conf, passed to apt as APT_CONFIG.
	ConfigPath string
	// ArchivesDir is where Download leaves .deb files.
	ArchivesDir string
	// ListsDir is where Update leaves the index files.
	ListsDir string

	opts Options
}

// New makes a Client in a temporary directory removed when the test ends.
// The test is skipped when apt-get is not installed or the test does not
// run as root (apt-get needs root to use its download sandbox settings).
func New(t testing.TB, opts Options) *Client {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("aptenv: apt-get not found in PATH (install Debian package apt)")
	}
	if os.Geteuid() != 0 {
		t.Skip("aptenv: apt-get runs as root only (it needs APT::Sandbox::User root); run the tests as root")
	}
	c, err := NewDir(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("aptenv: %v", err)
	}
	return c
}

// NewDir makes a Client whose state lives in dir (created if missing): the
// non-test variant for benchmarks and scripts.
func NewDir(dir string, opts Options) (*Client, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("make apt client in %s: %w", dir, err)
	}
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	if err := validate(opts); err != nil {
		return nil, err
	}
	c := &Client{
		Dir:         abs,
		ConfigPath:  filepath.Join(abs, "etc", "apt.conf"),
		ArchivesDir: filepath.Join(abs, "cache", "archives"),
		ListsDir:    filepath.Join(abs, "state", "lists"),
		opts:        opts,
	}
	for _, d := range []string{
		"etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d",
		"state/lists/partial", "cache/archives/partial", "log",
	} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("make apt client in %s: %w", dir, err)
		}
	}
	for _, name := range []string{"status", "etc/main.conf", "etc/preferences", "state/extended_states"} {
		if err := os.WriteFile(filepath.Join(abs, name), nil, 0o644); err != nil {
			return nil, fmt.Errorf("make apt client in %s: %w", dir, err)
		}
	}
	if err := c.writeConfig(); err != nil {
		return nil, err
	}
	return c, nil
}

func validate(opts Options) error {
	for i, s := range opts.Sources {
		if s.URL == "" || s.Keyring == "" {
			return fmt.Errorf("apt client: source %d (%q) needs both URL and Keyring", i, s.URL)
		}
		if !strings.HasSuffix(s.Keyring, ".gpg") && !strings.HasSuffix(s.Keyring, ".asc") {
			return fmt.Errorf("apt client: keyring %s must end in .gpg (binary) or .asc (armored), or apt ignores it", s.Keyring)
		}
	}
	return nil
}

// writeConfig writes sources.list and apt.conf from c.opts.
func (c *Client) writeConfig() error {
	for name, content := range map[string]string{
		"etc/sources.list": c.sourcesList(),
		"etc/apt.conf":     c.aptConf(),
	} {
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write apt configuration in %s: %w", c.Dir, err)
		}
	}
	return nil
}

// Reconfigure replaces the client's options (proxy, sources, extra
// configuration) for later runs. Downloaded lists and archives stay, as
// when a user edits sources.list or apt.conf.
func (c *Client) Reconfigure(opts Options) error {
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	if err := validate(opts); err != nil {
		return err
	}
	c.opts = opts
	return c.writeConfig()
}

// Lists returns the names of the index files apt keeps in ListsDir after
// Update (InRelease, Packages...; partial downloads and the lock excluded).
func (c *Client) Lists() ([]string, error) {
	ents, err := os.ReadDir(c.ListsDir)
	if err != nil {
		return nil, fmt.Errorf("list apt lists %s: %w", c.ListsDir, err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name() != "lock" {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (c *Client) sourcesList() string {
	var b strings.Builder
	for _, s := range c.opts.Sources {
		b.WriteString(s.Line())
		b.WriteByte('\n')
	}
	return b.String()
}

// aptConf is the APT_CONFIG file. apt reads it before anything else
// (apt-pkg/init.cc: APT_CONFIG, then Dir::Etc::Parts, then Dir::Etc::Main),
// so pointing Parts and Main at our own files keeps /etc/apt out entirely.
func (c *Client) aptConf() string {
	d := func(rel string) string { return filepath.Join(c.Dir, rel) }
	kv := [][2]string{
		{"Dir::Etc::Main", d("etc/main.conf")},
		{"Dir::Etc::Parts", d("etc/apt.conf.d")},
		{"Dir::Etc::SourceList", d("etc/sources.list")},
		{"Dir::Etc::SourceParts", d("etc/sources.list.d")},
		{"Dir::Etc::Preferences", d("etc/preferences")},
		{"Dir::Etc::PreferencesParts", d("etc/preferences.d")},
		{"Dir::Etc::Trusted", d("etc/trusted.gpg")},
		{"Dir::Etc::TrustedParts", d("etc/trusted.gpg.d")},
		{"Dir::State", d("state")},
		{"Dir::State::Lists", d("state/lists")},
		{"Dir::State::status", d("status")},
		{"Dir::State::extended_states", d("state/extended_states")},
		{"Dir::Cache", d("cache")},
		{"Dir::Cache::Archives", d("cache/archives")},
		{"Dir::Cache::pkgcache", d("cache/pkgcache.bin")},
		{"Dir::Cache::srcpkgcache", d("cache/srcpkgcache.bin")},
		{"Dir::Log", d("log")},
		{"APT::Architecture", c.opts.Arch},
		{"Acquire::Languages", "none"},
		{"APT::Sandbox::User", "root"},
		{"Debug::NoLocking", "1"},
		{"Acquire::Retries", "0"},
		{"APT::Install-Recommends", "0"},
		{"APT::Install-Suggests", "0"},
		{"Acquire::AllowInsecureRepositories", "0"},
		{"Acquire::AllowDowngradeToInsecureRepositories", "0"},
		{"APT::Get::AllowUnauthenticated", "0"},
	}
	if c.opts.Proxy != "" {
		kv = append(kv, [2]string{"Acquire::http::Proxy", c.opts.Proxy})
	}
	var b strings.Builder
	b.WriteString("// Generated by pkgswarm internal/aptenv: an isolated apt for tests.\n")
	for _, p := range kv {
		fmt.Fprintf(&b, "%s %q;\n", p[0], p[1])
	}
	fmt.Fprintf(&b, "APT::Architectures { %q; };\n", c.opts.Arch)
	for _, l := range c.opts.Config {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// Env is the environment apt-get runs with: the caller's, minus proxy
// variables (the client's proxy is set in its apt.conf only), plus
// APT_CONFIG and the C locale so output can be parsed.
func (c *Client) Env() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "apt_config", "lang", "language", "lc_all":
			return true
		}
		return false
	})
	return append(env, "APT_CONFIG="+c.ConfigPath, "LC_ALL=C", "LANG=C", "DEBIAN_FRONTEND=noninteractive")
}

// Run runs apt-get with args in the client's environment and returns its
// combined output. err is non-nil when apt-get exits non-zero, and also
// when its output has an "E:" line or (unless Options.AllowWarnings) a
// "W:" line; the error quotes those lines.
func (c *Client) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = c.Env()
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	text := out.String()
	if err := CheckOutput(text, c.opts.AllowWarnings); err != nil || runErr != nil {
		return text, &Error{Args: args, Exit: runErr, Problems: problems(text, c.opts.AllowWarnings), Output: text}
	}
	return text, nil
}

// Update runs apt-get update. It fails on a non-zero exit, an "E:" line,
// or (unless Options.AllowWarnings) a "W:" line, so a missing or bad
// signature, a hash sum mismatch or an unreachable source is an error.
func (c *Client) Update(ctx context.Context) (string, error) {
	return c.Run(ctx, "update")
}

// Download runs apt-get install --download-only for pkgs, leaving their
// .deb files (and those of their dependencies) in ArchivesDir; see
// Archives. Nothing is installed.
func (c *Client) Download(ctx context.Context, pkgs ...string) (string, error) {
	if len(pkgs) == 0 {
		return "", errors.New("apt-get download: no packages named")
	}
	args := append([]string{"install", "--download-only", "--yes", "--no-install-recommends"}, pkgs...)
	return c.Run(ctx, args...)
}

// Clean empties ArchivesDir (apt-get clean), so the next Download fetches
// again.
func (c *Client) Clean(ctx context.Context) error {
	_, err := c.Run(ctx, "clean")
	return err
}

// Archives returns the .deb files in ArchivesDir: file name -> SHA-256 hex.
func (c *Client) Archives() (map[string]string, error) {
	ents, err := os.ReadDir(c.ArchivesDir)
	if err != nil {
		return nil, fmt.Errorf("list apt archives %s: %w", c.ArchivesDir, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".deb") {
			continue
		}
		sum, err := fileSHA256(filepath.Join(c.ArchivesDir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = sum
	}
	return out, nil
}

func fileSHA256(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Error is a failed apt-get run.
type Error struct {
	Args     []string
	Exit     error    // from exec: nil when apt-get exited 0 but printed problems
	Problems []string // the "E:" and "W:" lines (and "Err:" lines) apt printed
	Output   string   // everything apt printed
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apt-get %s failed", strings.Join(e.Args, " "))
	if e.Exit != nil {
		fmt.Fprintf(&b, " (%v)", e.Exit)
	}
	if len(e.Problems) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(e.Problems, " | "))
	} else {
		b.WriteString("; output:\n")
		b.WriteString(e.Output)
	}
	return b.String()
}

// Problem kinds CheckOutput recognises, for errors.Is.
var (
	ErrAptError   = errors.New("apt reported an error")
	ErrAptWarning = errors.New("apt reported a warning")
	ErrHashSum    = errors.New("apt reported a hash sum mismatch")
	ErrSignature  = errors.New("apt reported a missing or bad signature")
	ErrExpired    = errors.New("apt reported a Release file outside its validity period")
)

// CheckOutput scans apt-get output and returns an error wrapping every
// problem kind found (ErrAptError, ErrAptWarning unless allowWarnings,
// ErrHashSum, ErrSignature, ErrExpired), quoting the first offending line,
// or nil.
func CheckOutput(out string, allowWarnings bool) error {
	var (
		kinds []error
		first string
	)
	add := func(k error, line string) {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
		if first == "" {
			first = line
		}
	}
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "E:"):
			add(ErrAptError, line)
		case strings.HasPrefix(line, "W:") && !allowWarnings:
			add(ErrAptWarning, line)
		}
		switch {
		case strings.Contains(line, "Hash Sum mismatch"), strings.Contains(line, "File has unexpected size"):
			add(ErrHashSum, line)
		case strings.Contains(line, "GPG error"), strings.Contains(line, "is not signed"),
			strings.Contains(line, "NO_PUBKEY"), strings.Contains(line, "BADSIG"),
			strings.Contains(line, "signatures couldn't be verified"), strings.Contains(line, "signatures were invalid"):
			add(ErrSignature, line)
		case strings.Contains(line, "is expired (invalid since"), strings.Contains(line, "is not valid yet (invalid for another"):
			add(ErrExpired, line)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	return &outputError{kinds: kinds, line: first}
}

type outputError struct {
	kinds []error
	line  string
}

func (e *outputError) Error() string   { return fmt.Sprintf("%v: %s", e.kinds[0], e.line) }
func (e *outputError) Unwrap() []error { return e.kinds }

// problems returns the lines of out worth quoting in an error.
func problems(out string, allowWarnings bool) []string {
	var ps []string
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "Err:") ||
			(!allowWarnings && strings.HasPrefix(line, "W:")) {
			ps = append(ps, line)
		}
	}
	return ps
}

// Unwrap lets errors.Is(err, ErrHashSum) and friends work on an *Error.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Exit != nil {
		errs = append(errs, e.Exit)
	}
	if err := CheckOutput(e.Output, false); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Config returns apt's effective configuration as apt-config dump prints
// it for this client: lower-cased key -> value. List entries appear under
// "key::" with their values joined by newlines.
func (c *Client) Config(ctx context.Context) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "apt-config", "dump")
	cmd.Env = c.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apt-config dump with %s: %w: %s", c.ConfigPath, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return ParseConfigDump(string(out))
}

// ParseConfigDump parses apt-config dump output: one `Key "value";` per
// line, where a value's '"' and '\' are not escaped (apt prints them raw,
// so the value runs to the last '"' before the final ';'). Keys are
// lower-cased, as apt's configuration is case-insensitive. Repeated keys
// (list entries, printed as "Key:: \"value\";") are joined with newlines.
func ParseConfigDump(out string) (map[string]string, error) {
	m := map[string]string{}
	for i, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, rest, ok := strings.Cut(line, " ")
		if !ok {
			// A key with no value at all, e.g. a bare list head "Key;".
			if !strings.HasSuffix(line, ";") {
				return nil, fmt.Errorf("apt-config dump line %d: %q is not `Key \"value\";`", i+1, clip(line))
			}
			m[strings.ToLower(strings.TrimSuffix(line, ";"))] += ""
			continue
		}
		if len(rest) < 3 || rest[0] != '"' || !strings.HasSuffix(rest, "\";") {
			return nil, fmt.Errorf("apt-config dump line %d: %q is not `Key \"value\";`", i+1, clip(line))
		}
		val := rest[1 : len(rest)-2]
		key = strings.ToLower(key)
		if old, dup := m[key]; dup {
			m[key] = old + "\n" + val
		} else {
			m[key] = val
		}
	}
	return m, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
