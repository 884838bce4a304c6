package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// TestHelpAnywhereChangesNothing is issue 10 item 5: for every command,
// -h or --help anywhere on its command line (before, between and after its
// flags and arguments) prints exactly what `pkgswarm CMD --help` prints,
// exits 0, and does nothing else: no file under the client root, the cache
// or a data directory changes, no node is asked anything, no server starts.
func TestHelpAnywhereChangesNothing(t *testing.T) {
	var asked atomic.Int64
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Error(w, "a --help run asked the node", http.StatusTeapot)
	}))
	defer node.Close()

	dir := t.TempDir()
	root := filepath.Join(dir, "root") // a system for setup
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/urpmi", "etc/dnf"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "etc/dnf/dnf.conf"), []byte("[main]\ngpgcheck=1\n"), 0o644)
	undone := filepath.Join(dir, "undone") // a system set up by pkgswarm, for --undo
	os.MkdirAll(filepath.Join(undone, "etc/apt/apt.conf.d"), 0o755)
	if _, _, code := runPkgswarm(t, runOpts{}, "setup", "apt", "--root", undone); code != 0 {
		t.Fatal("setup apt --root: failed")
	}
	cache := filepath.Join(dir, "cache") // a stopped node's cache
	st, err := store.Open(store.Options{Dir: cache})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	archives := filepath.Join(dir, "archives")
	os.Mkdir(archives, 0o755)
	os.WriteFile(filepath.Join(archives, "x_1.0_all.deb"), []byte("not really a package"), 0o644)
	fresh := filepath.Join(dir, "fresh") // serve's data directory: must not appear
	watched := []string{root, undone, cache, archives, fresh, "/etc/apt/apt.conf.d/01pkgswarm-proxy"}
	start := snapshot(t, watched...)

	// Should a line be taken for something else than help (what the
	// test is for), the flags after an argument are not read: the
	// environment keeps such a run on loopback, without mDNS or swarm, away
	// from the real cache and the real /etc, and asking the counting node.
	safe := runOpts{timeout: 15 * time.Second, env: []string{
		"PKGSWARM_LISTEN=127.0.0.1:0", "PKGSWARM_MDNS=false", "PKGSWARM_SWARM=off", "PKGSWARM_SYSTEM_KEYRINGS=false",
		"PKGSWARM_DATA_DIR=" + fresh, "PKGSWARM_SERVER=" + node.URL,
	}}
	digest := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		cmd   string
		flags []string // what would make it act
		args  []string
	}{
		{"serve", []string{"--listen", "127.0.0.1:0", "--mdns=false", "--swarm", "off", "--system-keyrings=false", "--data-dir", fresh}, []string{"now"}},
		{"setup", []string{"--root", root, "--proxy", "http://127.0.0.1:3142"}, []string{"apt"}},
		{"setup", []string{"--root", undone, "--undo"}, []string{"apt"}},
		{"import", []string{"--data-dir", cache, "--strict"}, []string{archives}},
		{"verify", []string{"--data-dir", cache}, []string{"now"}},
		{"gc", []string{"--data-dir", cache, "--size", "0"}, []string{"now"}},
		{"status", []string{"--server", node.URL, "--json"}, []string{"now"}},
		{"peers", []string{"--server", node.URL}, []string{"now"}},
		{"prefetch", []string{"--server", node.URL, "--url", node.URL + "/debian", "--suite", "stable"}, []string{"now"}},
		{"magnet", []string{"--server", node.URL}, []string{digest}},
		{"completion", nil, []string{"bash"}},
		{"gendoc", nil, []string{"man"}},
	} {
		want, errOut, code := runPkgswarm(t, runOpts{}, tc.cmd, "--help")
		if code != 0 || !strings.Contains(want, "pkgswarm "+tc.cmd+" - ") || !strings.Contains(want, "USAGE:") {
			t.Fatalf("pkgswarm %s --help: exit %d\n%s%s", tc.cmd, code, want, errOut)
		}
		split := len(tc.flags) / 2
		for split < len(tc.flags) && !strings.HasPrefix(tc.flags[split], "-") {
			split++ // keep a flag with its value
		}
		lines := map[string][]string{
			"first":            append(append([]string{"HELP"}, tc.flags...), tc.args...),
			"among the flags":  append(append(append(slices.Clone(tc.flags[:split]), "HELP"), tc.flags[split:]...), tc.args...),
			"after the flags":  append(append(slices.Clone(tc.flags), "HELP"), tc.args...),
			"after the args":   append(append(slices.Clone(tc.flags), tc.args...), "HELP"),
			"before last flag": append(append(slices.Clone(tc.args), "HELP"), tc.flags...),
		}
		for pos, line := range lines {
			for _, help := range []string{"--help", "-h"} {
				args := slices.Clone(line)
				args[slices.Index(args, "HELP")] = help
				name := fmt.Sprintf("%s %s %s", tc.cmd, pos, help)
				t.Run(name, func(t *testing.T) {
					before, asked0 := snapshot(t, watched...), asked.Load()
					// A help run takes a fraction of a second; a serve that
					// runs instead is stopped after 15.
					out, errOut, code := runPkgswarm(t, safe, append([]string{tc.cmd}, args...)...)
					if code != 0 || out != want {
						t.Errorf("pkgswarm %s %q: exit %d, want 0 and the command's help\nstdout:\n%s\nstderr:\n%s",
							tc.cmd, args, code, out, errOut)
					}
					if d := diffSnapshots(before, snapshot(t, watched...)); len(d) > 0 {
						t.Fatalf("pkgswarm %s %q changed files: %s", tc.cmd, args, strings.Join(d, "; "))
					}
					if n := asked.Load() - asked0; n > 0 {
						t.Fatalf("pkgswarm %s %q sent %d requests to the node", tc.cmd, args, n)
					}
				})
			}
		}
	}
	if d := diffSnapshots(start, snapshot(t, watched...)); len(d) > 0 {
		t.Errorf("the --help runs changed files: %s", strings.Join(d, "; "))
	}
}

func TestHelpAsked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"apt", "--help"}, true},
		{[]string{"apt", "-h"}, true},
		{[]string{"-help"}, true},
		{[]string{"--h"}, true},
		{[]string{"x", "--help=true", "y"}, true},
		{[]string{"--help=1"}, true},
		{[]string{"--help=false"}, false},
		{[]string{"--", "--help"}, false}, // an argument named --help
		{[]string{"apt", "---help"}, false},
		{[]string{"--helper", "-hh", "h", "help"}, false},
		{nil, false},
	} {
		if got := helpAsked(tc.args); got != tc.want {
			t.Errorf("helpAsked(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
