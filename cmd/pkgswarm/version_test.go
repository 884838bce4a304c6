package main

import (
	"os"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Issue 15 item 10: a build says which version it is, not "dev" in every
// build: the stamp of the packages, else what Go recorded.
func TestBuildVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name, stamped string
		info          *debug.BuildInfo
		want          string
	}{
		{"stamped", "0.3.1", &debug.BuildInfo{Main: debug.Module{Version: "v9"}}, "0.3.1"},
		{"go install @version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.1"}}, "v0.3.1"},
		{"pseudo-version from the checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.2-0.20261206135300-0123456789ab+dirty"}}, "v0.3.2-0.20261206135300-0123456789ab+dirty"},
		{"commit only", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef0123", "true")}, "dev-0123456789ab+dirty"},
		{"clean commit", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef0123", "false")}, "dev-0123456789ab"},
		{"nothing known", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no build info", "", nil, "dev"},
	} {
		if got := buildVersion(tc.stamped, tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Issue 15: the README and --help say the same things: every serve flag
// is in the README's settings table and every flag there is a serve flag;
// every command is in its table of commands.
func TestReadmeMatchesHelp(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	// Issue 15 item 10: what a new operator needs before the first run.
	for _, want := range []string{
		"prints nothing while it\ndoes: two to three minutes", // the first go run compiles silently
		"The dashboard, `/metrics` and `/_pkgswarm/status` answer the clients `--allow-clients`",
		"docs/status-json.md",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the README does not say %q", want)
		}
	}
	if _, err := os.Stat("../../LICENSE"); err != nil {
		t.Errorf("no LICENSE file: %v", err)
	}
	settings := text[strings.Index(text, "## Settings"):]
	settings = settings[:strings.Index(settings[3:], "\n## ")+3]
	inTable := map[string]bool{}
	for _, line := range strings.Split(settings, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			continue
		}
		for _, f := range regexp.MustCompile("`(--[a-z0-9-]+)").FindAllStringSubmatch(cells[1], -1) {
			inTable[f[1]] = true
		}
	}
	var flags []string
	for _, f := range serveCommand().Flags {
		name := "--" + f.Names()[0]
		flags = append(flags, name)
		if name != "--config" && !inTable[name] {
			t.Errorf("serve flag %s is not in the README's settings table", name)
		}
	}
	for f := range inTable {
		if !slices.Contains(flags, f) {
			t.Errorf("the README's settings table has %s, which serve does not have", f)
		}
	}
	for _, c := range newApp().Commands {
		if c.Hidden || c.Name == "serve" {
			continue
		}
		if !strings.Contains(text, "`pkgswarm "+c.Name) {
			t.Errorf("command %s is not in the README", c.Name)
		}
	}
	// Flags the README names for a command exist.
	for _, m := range regexp.MustCompile("`pkgswarm (prefetch|gc|status|peers|import|verify|magnet|setup)[^`]*`").FindAllString(text, -1) {
		cmdName := strings.Fields(strings.Trim(m, "`"))[1]
		var cmd *cli.Command
		for _, c := range newApp().Commands {
			if c.Name == cmdName {
				cmd = c
			}
		}
		for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(m, -1) {
			ok := false
			for _, fl := range cmd.Flags {
				ok = ok || slices.Contains(fl.Names(), strings.TrimPrefix(f, "--"))
			}
			if !ok && f != "--help" {
				t.Errorf("the README's %s names %s, which pkgswarm %s does not have", m, f, cmdName)
			}
		}
	}
}
