package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Issue 15: what a new operator trips over. Each test runs the real
// command (this test binary as main, see TestMain).

// safeEnv keeps a run that should have been refused (or that a bug turns
// into a real serve) on loopback, without mDNS or swarm, away from the
// real cache and config.
func safeEnv(t *testing.T) runOpts {
	t.Helper()
	return runOpts{timeout: 30 * time.Second, env: []string{
		"PKGSWARM_LISTEN=127.0.0.1:0", "PKGSWARM_MDNS=false", "PKGSWARM_SWARM=off", "PKGSWARM_SYSTEM_KEYRINGS=false",
		"PKGSWARM_DATA_DIR=" + filepath.Join(t.TempDir(), "data"), "PKGSWARM_CONFIG=" + os.DevNull,
		"PKGSWARM_SERVER=http://127.0.0.1:1",
	}}
}

// Item 6: an unknown command says so and suggests the nearest one; it does
// not dump the whole help.
func TestUnknownCommandSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stauts"}, []string{`unknown command "stauts"`, `did you mean "status"`}},
		{[]string{"help", "stauts"}, []string{`unknown command "stauts"`, `did you mean "status"`}},
		{[]string{"bogus"}, []string{`unknown command "bogus"`, "pkgswarm --help"}},
		{[]string{"help", "bogus"}, []string{`unknown command "bogus"`}},
	} {
		out, errOut, code := runPkgswarm(t, safeEnv(t), tc.args...)
		if code == 0 {
			t.Errorf("pkgswarm %q: exit 0", tc.args)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("pkgswarm %q: stderr lacks %q:\n%s", tc.args, w, errOut)
			}
		}
		if strings.Contains(out+errOut, "No help topic") || strings.Contains(out+errOut, "USAGE:") {
			t.Errorf("pkgswarm %q prints the help instead of the error:\n%s%s", tc.args, out, errOut)
		}
		if n := strings.Count(errOut, "\n"); n != 1 {
			t.Errorf("pkgswarm %q: %d lines on stderr, want one:\n%s", tc.args, n, errOut)
		}
	}
}

// Item 6: a bad flag prints its error once, with the nearest flag, not
// twice around the help.
func TestBadFlagErrorOnce(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"status", "--serve", "http://127.0.0.1:1"}, []string{"unknown flag --serve", "did you mean --server?", "pkgswarm status --help"}},
		{[]string{"gc", "--sise", "1G"}, []string{"unknown flag --sise", "did you mean --size?"}},
		{[]string{"serve", "--cahce-size", "1G"}, []string{"unknown flag --cahce-size", "did you mean --cache-size?"}},
		{[]string{"--verbose"}, []string{"unknown flag --verbose", "pkgswarm --help"}},
		{[]string{"prefetch", "--jobs", "many"}, []string{`invalid value "many" for flag -jobs`}},
		{[]string{"import", os.TempDir(), "--strcit"}, []string{"unknown flag --strcit", "did you mean --strict?"}},
		{[]string{"setup", "apt", "--roo", "/nonexistent"}, []string{"unknown flag --roo", "did you mean --root?"}},
	} {
		out, errOut, code := runPkgswarm(t, safeEnv(t), tc.args...)
		if code != 2 {
			t.Errorf("pkgswarm %q: exit %d, want 2 (a usage error)", tc.args, code)
		}
		for _, w := range tc.want {
			if strings.Count(errOut, w) != 1 {
				t.Errorf("pkgswarm %q: stderr has %q %d times, want once:\n%s", tc.args, w, strings.Count(errOut, w), errOut)
			}
		}
		if strings.Contains(out+errOut, "USAGE:") || strings.Contains(out+errOut, "Incorrect Usage") {
			t.Errorf("pkgswarm %q prints the help around the error:\n%s%s", tc.args, out, errOut)
		}
	}
}

// A command that takes no arguments refuses them: urfave/cli stops reading
// flags at the first argument, so `pkgswarm serve cache --listen
// 127.0.0.1:3142` would otherwise serve on the default address, with mDNS,
// having silently dropped every flag after "cache".
func TestCommandWithoutArgumentsRefusesThem(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "cache", "--listen", "127.0.0.1:1"}, `serve takes no arguments, got "cache"`},
		{[]string{"status", "now"}, `status takes no arguments, got "now"`},
		{[]string{"gc", "--size", "1G", "all"}, `gc takes no arguments, got "all"`},
		{[]string{"verify", "a", "b"}, `verify takes no arguments, got "a" "b"`},
		{[]string{"peers", "x"}, `peers takes no arguments, got "x"`},
		{[]string{"prefetch", "hello"}, `prefetch takes no arguments, got "hello"`},
	} {
		opts := safeEnv(t)
		opts.timeout = 10 * time.Second
		out, errOut, code := runPkgswarm(t, opts, tc.args...)
		if code != 2 {
			t.Errorf("pkgswarm %q: exit %d, want 2 (a usage error)\n%s%s", tc.args, code, out, errOut)
		}
		if strings.Count(errOut, tc.want) != 1 {
			t.Errorf("pkgswarm %q: stderr lacks %q once:\n%s", tc.args, tc.want, errOut)
		}
		if strings.Contains(out+errOut, "pkgswarm serving") {
			t.Errorf("pkgswarm %q started serving:\n%s%s", tc.args, out, errOut)
		}
	}
}

// Item 6: a command's help lists no "help, h" subcommand, and a flag shows
// one default.
func TestCommandHelpTidy(t *testing.T) {
	for _, cmd := range []string{"serve", "status", "peers", "prefetch", "import", "verify", "gc", "setup", "magnet", "completion"} {
		out, _, code := runPkgswarm(t, safeEnv(t), cmd, "--help")
		if code != 0 {
			t.Fatalf("pkgswarm %s --help: exit %d", cmd, code)
		}
		if strings.Contains(out, "help, h") || strings.Contains(out, "COMMANDS:") {
			t.Errorf("pkgswarm %s --help lists a help subcommand:\n%s", cmd, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if n := strings.Count(line, "default"); n > 1 {
				t.Errorf("pkgswarm %s --help: a flag with %d defaults: %s", cmd, n, strings.TrimSpace(line))
			}
		}
	}
}

// Item 6: completing `pkgswarm serve --<TAB>` offers serve's flags (and
// runs no serve), and the fish script lists each command once.
func TestCompletionOffersFlags(t *testing.T) {
	needTools(t, "bash")
	bin := pkgswarmDir(t)
	script, _, code := runPkgswarm(t, safeEnv(t), "completion", "bash")
	if code != 0 {
		t.Fatal("completion bash failed")
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"pkgswarm", "serve", "--"}, []string{"--listen", "--cache-size", "--data-dir", "--swarm"}},
		{[]string{"pkgswarm", "serve", "-"}, []string{"--listen", "--cache-size"}},
		{[]string{"pkgswarm", "serve", "--cache"}, []string{"--cache-size"}},
		{[]string{"pkgswarm", "gc", "--"}, []string{"--size", "--data-dir"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		words := ""
		for _, w := range tc.words {
			words += " " + shellQuote(w)
		}
		cmd := exec.CommandContext(ctx, "bash", "-c", script+"\nCOMP_WORDS=("+words+"); COMP_CWORD="+
			strconv.Itoa(len(tc.words)-1)+"; _pkgswarm; printf '%s\\n' \"${COMPREPLY[@]}\"")
		cmd.Env = append(safeEnv(t).env, "PATH="+bin+":"+os.Getenv("PATH"), mainArgsEnv+"=-", "GORACE=atexit_sleep_ms=0", "HOME="+t.TempDir())
		cmd.WaitDelay = time.Second
		out, err := cmd.Output()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Errorf("completing %q did not end within 20 s (it ran the command?)", tc.words)
			continue
		}
		if err != nil {
			t.Errorf("completing %q: %v", tc.words, err)
		}
		got := strings.Fields(string(out))
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q offers %q, not %s", tc.words, got, w)
			}
		}
	}

	// A completion request after "--" never runs the command.
	start := time.Now()
	out, errOut, code := runPkgswarm(t, safeEnv(t), "serve", "--", "--generate-bash-completion")
	if code != 0 || out != "" || strings.Contains(errOut, "serving") || time.Since(start) > 15*time.Second {
		t.Errorf("serve -- --generate-bash-completion: exit %d after %v\n%s%s", code, time.Since(start), out, errOut)
	}

	fish, _, _ := runPkgswarm(t, safeEnv(t), "completion", "fish")
	for _, line := range strings.Split(fish, "\n") {
		if _, list, ok := strings.Cut(line, "contains -- $i "); ok {
			seen := map[string]bool{}
			for _, w := range strings.Fields(list) {
				if seen[w] {
					t.Errorf("the fish script lists %q twice: %s", w, strings.TrimSpace(line))
				}
				seen[w] = true
			}
		}
	}
}

// Item 3: the config file refuses unknown keys (naming the file, the key
// and the nearest known key) and wrong types (naming an example value), in
// one line each, without "inner error" chains.
func TestConfigFileStrict(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file string
		cmd        []string
		want       []string
	}{
		{"underscore", `cache_size = "20G"`, []string{"serve"}, []string{`unknown key "cache_size"`, `did you mean "cache-size"`}},
		{"typo", `cahce-size = "20G"`, []string{"serve"}, []string{`unknown key "cahce-size"`, `did you mean "cache-size"`}},
		{"typo read by gc", `lisen = ":3142"`, []string{"gc", "--size", "1G"}, []string{`unknown key "lisen"`, `did you mean "listen"`}},
		{"nothing near", `colour = "blue"`, []string{"serve"}, []string{`unknown key "colour"`, "pkgswarm serve --help"}},
		{"bool", `mdns = "no"`, []string{"serve"}, []string{`key "mdns"`, "true or false", "mdns = true"}},
		{"duration", `revalidate = 27`, []string{"serve"}, []string{`key "revalidate"`, `revalidate = "27s"`}},
		{"int", `origin-connections = "4"`, []string{"serve"}, []string{`key "origin-connections"`, "origin-connections = 4"}},
		{"string", `cache-size = 10`, []string{"serve"}, []string{`key "cache-size"`, `cache-size = "10G"`}},
		{"list", `peer = [1, 2]`, []string{"serve"}, []string{`key "peer"`, `peer = ["http://10.0.0.2:3142"]`}},
		{"table", "[swarm]\nmode = \"off\"", []string{"serve"}, []string{`key "swarm"`, `swarm = "lan"`}},
		{"syntax", `listen = `, []string{"serve"}, []string{"line 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".toml")
			if err := os.WriteFile(file, []byte(tc.file+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			data := filepath.Join(dir, tc.name+"-data")
			args := append(append([]string{}, tc.cmd...), "--config", file, "--data-dir", data)
			out, errOut, code := runPkgswarm(t, safeEnv(t), args...)
			if code == 0 {
				t.Fatalf("pkgswarm %q with %q: exit 0\n%s%s", args, tc.file, out, errOut)
			}
			want := append([]string{"config file " + file}, tc.want...)
			for _, w := range want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%q: stderr lacks %q:\n%s", tc.file, w, errOut)
				}
			}
			if strings.Contains(errOut, "inner error") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Errorf("%q: want one line, no inner errors:\n%s", tc.file, errOut)
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("%q: the data directory was created despite the bad config", tc.file)
			}
		})
	}
	// A good file still works, lists included as one string or many.
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("log-level = \"warn\"\nkeyring = []\npeer = \"http://127.0.0.1:1\"\nrevalidate = \"1m\"\norigin-connections = 2\n"), 0o644)
	s := startServe(t, runOpts{}, "--config", good, "--log-level", "info", "--data-dir", filepath.Join(dir, "good-data"))
	if err := s.stop(); err != nil {
		t.Fatalf("serve with a good config: %v\n%s", err, s.log())
	}
}

// Item 7: the "another proxy" hint only for an address in use; a malformed
// --listen says what to write; the lock conflict is said once; flags are
// checked before the cache is opened.
func TestHintsOnlyWhereLikely(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		listen, want, not string
	}{
		{"127.0.0.1:99999", "want HOST:PORT or :PORT", "another"},
		{"localhost", "missing port", "another"},
		{busy.Addr().String(), "already in use (another proxy", ""},
	} {
		data := filepath.Join(dir, "listen")
		_, errOut, code := runPkgswarm(t, safeEnv(t), "serve", "--listen", tc.listen, "--data-dir", data)
		if code == 0 || !strings.Contains(errOut, tc.want) || (tc.not != "" && strings.Contains(errOut, tc.not)) {
			t.Errorf("serve --listen %s: exit %d, want %q and not %q:\n%s", tc.listen, code, tc.want, tc.not, errOut)
		}
	}

	// Flags are checked before anything is opened: no data directory.
	for _, bad := range [][]string{
		{"--swarm", "lan", "--swarm-upload-rate", "fast"},
		{"--swarm", "lan", "--swarm-listen", "6881"},
		{"--swarm", "everywhere"},
	} {
		data := filepath.Join(dir, "flags")
		_, errOut, code := runPkgswarm(t, safeEnv(t), append([]string{"serve", "--data-dir", data}, bad...)...)
		if code == 0 {
			t.Errorf("serve %q: exit 0", bad)
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("serve %q created its data directory before refusing the flag:\n%s", bad, errOut)
			os.RemoveAll(data)
		}
	}

	// The lock conflict: one hint.
	cache := filepath.Join(dir, "cache")
	st, err := store.Open(store.Options{Dir: cache})
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runPkgswarm(t, safeEnv(t), "gc", "--data-dir", cache, "--size", "1G")
	st.Close()
	if code == 0 || strings.Count(errOut, "in use") != 1 || strings.Contains(errOut, "another pkgswarm") {
		t.Errorf("gc on a cache in use: exit %d, want one hint:\n%s", code, errOut)
	}

	// A permission error is not a lock conflict.
	needRoot(t, "runs gc as another user")
	locked := filepath.Join(worldDir(t), "cache")
	st, err = store.Open(store.Options{Dir: locked})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	os.Chmod(locked, 0o700) // root's, closed to others
	exe := userBinary(t, worldDir(t))
	o := safeEnv(t)
	o.exe, o.cred = exe, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	_, errOut, code = runPkgswarm(t, o, "gc", "--data-dir", locked, "--size", "1G")
	if code == 0 || strings.Contains(errOut, "in use") || strings.Contains(errOut, "another pkgswarm") ||
		!regexp.MustCompile(`(?i)permission|cannot enter`).MatchString(errOut) {
		t.Errorf("gc as another user on root's cache: exit %d, want a permission error without a lock hint:\n%s", code, errOut)
	}
}
