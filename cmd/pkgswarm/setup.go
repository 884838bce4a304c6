package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// A package manager's proxy setting, as `pkgswarm setup` writes it.
//
// apt gets a file of its own in apt.conf.d. urpmi's proxy.cfg and dnf's
// dnf.conf are edited in place: every line setup adds or replaces is
// preceded by a marker comment that says how to undo it, so --undo restores
// the file byte for byte (whatever else was edited meanwhile stays) and a
// second setup (say, with another --proxy) first undoes the first.
type clientSetup struct {
	name string // apt, urpmi, dnf
	path string // the file, relative to the root
	// dir must exist under the root, or the client is taken as not installed.
	dir string
	// key and section of the setting in a key=value file ("" section: the
	// top of the file); empty key: the whole file is pkgswarm's (apt).
	key, section string
	value        func(proxy *url.URL) string
}

var clientSetups = []clientSetup{
	{name: "apt", path: "etc/apt/apt.conf.d/01pkgswarm-proxy", dir: "etc/apt/apt.conf.d",
		value: func(u *url.URL) string { return u.String() }},
	{name: "urpmi", path: "etc/urpmi/proxy.cfg", dir: "etc/urpmi", key: "http_proxy",
		value: func(u *url.URL) string { return u.Host }},
	{name: "dnf", path: "etc/dnf/dnf.conf", dir: "etc/dnf", key: "proxy", section: "main",
		value: func(u *url.URL) string { return u.String() }},
}

func setupCommand() *cli.Command {
	return &cli.Command{
		Name:      "setup",
		Usage:     "point apt, urpmi or dnf on this machine at pkgswarm (or undo it)",
		ArgsUsage: "apt|urpmi|dnf",
		Description: "apt:   writes /etc/apt/apt.conf.d/01pkgswarm-proxy with Acquire::http::Proxy\n" +
			"urpmi: sets http_proxy=HOST:PORT in /etc/urpmi/proxy.cfg\n" +
			"dnf:   sets proxy=URL in the [main] section of /etc/dnf/dnf.conf\n\n" +
			"Files that exist are edited in place, keeping everything else; --undo restores them exactly.\n" +
			"`pkgswarm setup --undo` with no client undoes every client set up. HTTPS repositories are\n" +
			"not affected (apt and dnf reach them directly).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "proxy", Value: defaultServer, Usage: "the pkgswarm node clients should use"},
			&cli.StringFlag{Name: "root", Value: "/", Usage: "act on the system under this directory instead of / (a chroot, an image, tests)"},
			&cli.BoolFlag{Name: "undo", Usage: "remove what setup wrote, restoring the files as they were"},
		},
		BashComplete: func(c *cli.Context) {
			for _, cs := range clientSetups {
				fmt.Fprintln(c.App.Writer, cs.name)
			}
		},
		Action: runSetup,
	}
}

func runSetup(c *cli.Context) error {
	c, err := withTrailingFlags(c)
	if err != nil {
		return cli.Exit(err, 2)
	}
	root := c.String("root")
	if c.NArg() > 1 {
		return exitf(2, "setup: one client at a time (apt, urpmi or dnf), got %q", c.Args().Slice())
	}
	if c.NArg() == 0 {
		if !c.Bool("undo") {
			return exitf(2, "setup: name the client to configure: pkgswarm setup apt|urpmi|dnf (or --undo for all)")
		}
		undone := 0
		for _, cs := range clientSetups {
			msg, err := cs.undo(root)
			if err != nil {
				return cli.Exit(err, 1)
			}
			if msg != "" {
				undone++
				fmt.Fprintln(c.App.Writer, msg)
			}
		}
		if undone == 0 {
			fmt.Fprintln(c.App.Writer, "nothing to undo: no client was set up by pkgswarm under", root)
		}
		return nil
	}
	i := slices.IndexFunc(clientSetups, func(cs clientSetup) bool { return cs.name == c.Args().First() })
	if i < 0 {
		return exitf(2, "setup: unknown client %q: want apt, urpmi or dnf", c.Args().First())
	}
	cs := clientSetups[i]
	if c.Bool("undo") {
		msg, err := cs.undo(root)
		if err != nil {
			return cli.Exit(err, 1)
		}
		if msg == "" {
			msg = fmt.Sprintf("nothing to undo: %s was not set up by pkgswarm", filepath.Join(root, cs.path))
		}
		fmt.Fprintln(c.App.Writer, msg)
		return nil
	}
	u, err := parseProxyURL(c.String("proxy"))
	if err != nil {
		return cli.Exit(err, 2)
	}
	msg, err := cs.apply(root, u)
	if err != nil {
		return cli.Exit(err, 1)
	}
	fmt.Fprintln(c.App.Writer, msg)
	if cs.name == "apt" {
		for _, w := range otherAptProxies(root, cs.path) {
			fmt.Fprintln(c.App.ErrWriter, "warning:", w)
		}
	}
	return nil
}

func parseProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--proxy %q: want http://HOST:PORT, e.g. %s", s, defaultServer)
	}
	u.Path = ""
	return u, nil
}

func (cs clientSetup) apply(root string, u *url.URL) (string, error) {
	file := filepath.Join(root, cs.path)
	if _, err := os.Stat(filepath.Join(root, cs.dir)); err != nil {
		return "", fmt.Errorf("setup %s: %s does not exist: is %s installed here? (use --root for another system)", cs.name, filepath.Join(root, cs.dir), cs.name)
	}
	old, err := os.ReadFile(file)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("setup %s: %w", cs.name, err)
	}
	var out []byte
	if cs.key == "" {
		if exists && !bytes.HasPrefix(old, []byte(aptHeader)) {
			return "", fmt.Errorf("setup apt: %s exists and was not written by pkgswarm: remove or rename it, then run setup again", file)
		}
		out = []byte(aptSnippet(cs.value(u)))
	} else {
		out = setKey(old, exists, cs.section, cs.key, cs.value(u), cs.name)
	}
	if err := writeFileAtomic(file, out); err != nil {
		return "", fmt.Errorf("setup %s: %w", cs.name, err)
	}
	what := map[string]string{
		"apt":   "apt fetches http:// repositories through " + u.String(),
		"urpmi": "urpmi downloads through " + u.Host,
		"dnf":   "dnf downloads through " + u.String(),
	}[cs.name]
	return fmt.Sprintf("wrote %s: %s (undo: %s)", file, what, undoCommand(cs.name, root)), nil
}

// undoCommand is the command line that undoes setup of client under root.
func undoCommand(client, root string) string {
	s := "pkgswarm setup " + client + " --undo"
	if abs, err := filepath.Abs(root); err == nil && abs != "/" {
		s += " --root " + shellQuote(abs)
	} else if err != nil {
		s += " --root " + shellQuote(root)
	}
	return s
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// undo reverts what apply wrote. It returns "" when there was nothing to undo.
func (cs clientSetup) undo(root string) (string, error) {
	file := filepath.Join(root, cs.path)
	cur, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("setup %s --undo: %w", cs.name, err)
	}
	if cs.key == "" {
		if !bytes.HasPrefix(cur, []byte(aptHeader)) {
			return "", nil
		}
		if err := os.Remove(file); err != nil {
			return "", fmt.Errorf("setup apt --undo: %w", err)
		}
		return "removed " + file, nil
	}
	out, remove, changed := unsetKey(cur)
	if !changed {
		return "", nil
	}
	if remove {
		if err := os.Remove(file); err != nil {
			return "", fmt.Errorf("setup %s --undo: %w", cs.name, err)
		}
		return "removed " + file + " (pkgswarm had created it)", nil
	}
	if err := writeFileAtomic(file, out); err != nil {
		return "", fmt.Errorf("setup %s --undo: %w", cs.name, err)
	}
	return "restored " + file, nil
}

const aptHeader = "// Written by `pkgswarm setup apt`; `pkgswarm setup apt --undo` removes this file.\n"

func aptSnippet(proxy string) string {
	return aptHeader +
		"// apt fetches http:// repositories through pkgswarm, which caches them and\n" +
		"// verifies every file against the repository's signed metadata.\n" +
		fmt.Sprintf("Acquire::http::Proxy %q;\n", proxy)
}

// otherAptProxies names the other apt configuration files that set an
// HTTP proxy: apt reads apt.conf.d in name order and the last setting wins.
func otherAptProxies(root, ours string) []string {
	var files []string
	if m, _ := filepath.Glob(filepath.Join(root, "etc/apt/apt.conf.d/*")); m != nil {
		files = m
	}
	files = append(files, filepath.Join(root, "etc/apt/apt.conf"))
	var out []string
	for _, f := range files {
		if f == filepath.Join(root, ours) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(bytes.ToLower(b), []byte("http::proxy")) {
			out = append(out, fmt.Sprintf("%s also sets Acquire::http::Proxy; if it sorts after 01pkgswarm-proxy it wins: remove the setting there", f))
		}
	}
	return out
}

// Markers of setKey's edits. Each starts with markPrefix.
const (
	markPrefix   = "# pkgswarm setup: "
	markAdded    = markPrefix + "added the next line (pkgswarm setup %s --undo removes it)"
	markReplaced = markPrefix + "replaced the next line (--undo restores it) of: "
	markSection  = markPrefix + "added the next 2 lines (pkgswarm setup %s --undo removes them)"
	markCreated  = markPrefix + "created this file (--undo deletes it)"
	markNoEOL    = markPrefix + "the file had no final newline"
)

// splitLines splits b into lines without their "\n" and reports whether b
// ended with one. Empty b has no lines.
func splitLines(b []byte) (lines []string, finalNL bool) {
	if len(b) == 0 {
		return nil, false
	}
	s := string(b)
	finalNL = strings.HasSuffix(s, "\n")
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n"), finalNL
}

// keyOf returns the key of a "key = value" line, or "" for comments,
// section headers and other lines.
func keyOf(line string) string {
	t := strings.TrimSpace(line)
	if t == "" || t[0] == '#' || t[0] == ';' || t[0] == '[' {
		return ""
	}
	k, _, ok := strings.Cut(t, "=")
	if !ok {
		return ""
	}
	return strings.TrimSpace(k)
}

// sectionOf returns the name of a "[name]" header line, or "".
func sectionOf(line string) (string, bool) {
	t := strings.TrimSpace(line)
	if len(t) >= 2 && t[0] == '[' && t[len(t)-1] == ']' {
		return strings.TrimSpace(t[1 : len(t)-1]), true
	}
	return "", false
}

// setKey sets key=value in section ("" = before any section) of a
// key=value file, marking each change so unsetKey can revert it exactly.
// An earlier setKey is undone first. The result ends with a newline.
func setKey(old []byte, exists bool, section, key, value, client string) []byte {
	if back, remove, changed := unsetKey(old); changed {
		old = back
		exists = !remove
	}
	lines, finalNL := splitLines(old)
	setting := key + "=" + value
	// The last assignment of key in the section wins in these formats:
	// replace that one.
	cur, at, headerAt := "", -1, -1
	for i, l := range lines {
		if name, ok := sectionOf(l); ok {
			cur = name
			if name == section && headerAt < 0 {
				headerAt = i
			}
			continue
		}
		if cur == section && keyOf(l) == key {
			at = i
		}
	}
	var out []string
	switch {
	case at >= 0:
		out = append(out, lines[:at]...)
		out = append(out, markReplaced+lines[at], setting)
		out = append(out, lines[at+1:]...)
	case section != "" && headerAt >= 0:
		out = append(out, lines[:headerAt+1]...)
		out = append(out, fmt.Sprintf(markAdded, client), setting)
		out = append(out, lines[headerAt+1:]...)
	case section != "":
		out = append(out, lines...)
		out = append(out, fmt.Sprintf(markSection, client), "["+section+"]", setting)
	default:
		// Before any section header: urpmi reads proxy.cfg from the top.
		first := len(lines)
		for i, l := range lines {
			if _, ok := sectionOf(l); ok {
				first = i
				break
			}
		}
		out = append(out, lines[:first]...)
		out = append(out, fmt.Sprintf(markAdded, client), setting)
		out = append(out, lines[first:]...)
	}
	if !exists {
		out = append([]string{markCreated}, out...)
	}
	if len(old) > 0 && !finalNL {
		out = append(out, markNoEOL)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// unsetKey reverts setKey's marked edits. remove is true when setKey had
// created the file and nothing else was added since; changed is false when
// b has no marker.
func unsetKey(b []byte) (out []byte, remove, changed bool) {
	lines, finalNL := splitLines(b)
	var keep []string
	created, noEOL := false, false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, markPrefix) {
			keep = append(keep, l)
			continue
		}
		changed = true
		switch {
		case strings.HasPrefix(l, markReplaced):
			keep = append(keep, strings.TrimPrefix(l, markReplaced))
			i++
		case l == markCreated:
			created = true
		case l == markNoEOL:
			noEOL = true
		case strings.HasPrefix(l, markPrefix+"added the next 2 lines"):
			i += 2
		case strings.HasPrefix(l, markPrefix+"added the next line"):
			i++
		default:
			keep = append(keep, l) // a marker of a later version: leave it
		}
	}
	if !changed {
		return b, false, false
	}
	s := strings.Join(keep, "\n")
	if len(keep) > 0 && (finalNL || len(keep) > 0) {
		s += "\n"
	}
	if noEOL {
		s = strings.TrimSuffix(s, "\n")
	}
	return []byte(s), created && strings.TrimSpace(s) == "", true
}

// writeFileAtomic replaces file with data through a temporary file in the
// same directory, keeping the old file's permissions (0644 for a new one).
func writeFileAtomic(file string, data []byte) error {
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(file); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".pkgswarm-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
