package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
)

func TestSetKey(t *testing.T) {
	t.Parallel()
	const dnfConf = "[main]\ngpgcheck=1\ninstallonly_limit=3\n\n[updates]\nproxy=http://other:1\n"
	for _, tc := range []struct {
		name, section, key, value string
		old                       string
		exists                    bool
		want                      string
	}{
		{name: "dnf: added to [main]", section: "main", key: "proxy", value: "http://127.0.0.1:3142", old: dnfConf, exists: true,
			want: "[main]\n" + markPrefix + "added the next line (pkgswarm setup dnf --undo removes it)\nproxy=http://127.0.0.1:3142\ngpgcheck=1\ninstallonly_limit=3\n\n[updates]\nproxy=http://other:1\n"},
		{name: "dnf: replaces the last proxy of [main] only", section: "main", key: "proxy", value: "http://h:3142",
			old: "[main]\nproxy = http://a:1\nproxy=http://b:2\n[x]\nproxy=c\n", exists: true,
			want: "[main]\nproxy = http://a:1\n" + markReplaced + "proxy=http://b:2\nproxy=http://h:3142\n[x]\nproxy=c\n"},
		{name: "dnf: no [main]", section: "main", key: "proxy", value: "http://h:3142", old: "# empty\n", exists: true,
			want: "# empty\n" + markPrefix + "added the next 2 lines (pkgswarm setup dnf --undo removes them)\n[main]\nproxy=http://h:3142\n"},
		{name: "dnf: no file", section: "main", key: "proxy", value: "http://h:3142",
			want: markCreated + "\n" + markPrefix + "added the next 2 lines (pkgswarm setup dnf --undo removes them)\n[main]\nproxy=http://h:3142\n"},
		{name: "urpmi: replaces", key: "http_proxy", value: "h:3142", old: "proxy_user=u:p\nhttp_proxy=squid:3128", exists: true,
			want: "proxy_user=u:p\n" + markReplaced + "http_proxy=squid:3128\nhttp_proxy=h:3142\n" + markNoEOL + "\n"},
		{name: "urpmi: per-medium lines untouched", key: "http_proxy", value: "h:3142", old: "core:http_proxy=x:1\n", exists: true,
			want: "core:http_proxy=x:1\n" + markPrefix + "added the next line (pkgswarm setup urpmi --undo removes it)\nhttp_proxy=h:3142\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := "urpmi"
			if tc.section == "main" {
				client = "dnf"
			}
			got := string(setKey([]byte(tc.old), tc.exists, tc.section, tc.key, tc.value, client))
			if got != tc.want {
				t.Fatalf("setKey:\n%s\nwant:\n%s", got, tc.want)
			}
			back, remove, changed := unsetKey([]byte(got))
			if !changed || string(back) != tc.old || remove != !tc.exists {
				t.Fatalf("unsetKey = %q remove=%v changed=%v, want %q remove=%v", back, remove, changed, tc.old, !tc.exists)
			}
			// A second setup (another proxy) replaces the first.
			again := string(setKey([]byte(got), true, tc.section, tc.key, tc.value+"9", client))
			if strings.Count(again, markPrefix) != strings.Count(got, markPrefix) || !strings.Contains(again, tc.value+"9") {
				t.Fatalf("second setKey stacked edits:\n%s", again)
			}
			if back, _, _ := unsetKey([]byte(again)); string(back) != tc.old {
				t.Fatalf("undo after two setups = %q, want %q", back, tc.old)
			}
		})
	}
}

// FuzzSetKey: for any file without pkgswarm's markers, setKey then unsetKey
// gives the file back byte for byte, and the setting is the one in force.
func FuzzSetKey(f *testing.F) {
	f.Add([]byte("[main]\ngpgcheck=1\n"), true, true)
	f.Add([]byte("http_proxy=a:1"), true, false)
	f.Add([]byte(""), true, false)
	f.Add([]byte("\n\n"), true, true)
	f.Add([]byte("[main]\r\nproxy=x\r\n"), true, true)
	f.Add([]byte("[ main ]\nproxy\n=\n[main]\nproxy=1\n"), false, true)
	f.Fuzz(func(t *testing.T, old []byte, exists, dnf bool) {
		if strings.Contains(string(old), markPrefix) || (!exists && len(old) > 0) {
			t.Skip()
		}
		section, key, value, client := "", "http_proxy", "h:3142", "urpmi"
		if dnf {
			section, key, value, client = "main", "proxy", "http://h:3142", "dnf"
		}
		got := setKey(old, exists, section, key, value, client)
		if last := lastValue(string(got), section, key); last != value {
			t.Fatalf("after setKey the %s in force is %q, want %q:\n%s", key, last, value, got)
		}
		back, remove, changed := unsetKey(got)
		if !changed || string(back) != string(old) || remove != !exists {
			t.Fatalf("unsetKey(setKey(%q)) = %q remove=%v changed=%v", old, back, remove, changed)
		}
	})
}

// lastValue is the value of the last key=value line in section: what
// urpmi and dnf use.
func lastValue(s, section, key string) string {
	cur, val := "", ""
	for _, l := range strings.Split(s, "\n") {
		if name, ok := sectionOf(l); ok {
			cur = name
			continue
		}
		if cur == section && keyOf(l) == key {
			_, v, _ := strings.Cut(l, "=")
			val = strings.TrimSpace(v)
		}
	}
	return val
}

func TestSetupFilesUnderRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/urpmi", "etc/dnf"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	dnf := "[main]\ngpgcheck=True\nproxy=http://squid:3128\n"
	os.WriteFile(filepath.Join(root, "etc/dnf/dnf.conf"), []byte(dnf), 0o600)
	os.WriteFile(filepath.Join(root, "etc/apt/apt.conf.d/99other"), []byte("Acquire::http::Proxy \"http://x:1\";\n"), 0o644)

	for _, tc := range []struct {
		client, file, want string
	}{
		{"apt", "etc/apt/apt.conf.d/01pkgswarm-proxy", `Acquire::http::Proxy "http://10.0.0.5:3142";`},
		{"urpmi", "etc/urpmi/proxy.cfg", "\nhttp_proxy=10.0.0.5:3142\n"},
		{"dnf", "etc/dnf/dnf.conf", "\nproxy=http://10.0.0.5:3142\n"},
	} {
		t.Run(tc.client, func(t *testing.T) {
			out, errOut, err := runCLI(t, "setup", tc.client, "--root", root, "--proxy", "http://10.0.0.5:3142")
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(root, tc.file))
			if err != nil || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%s = %q (%v), want it to contain %q", tc.file, b, err, tc.want)
			}
			if !strings.Contains(out, "undo: pkgswarm setup "+tc.client+" --undo") {
				t.Errorf("setup does not say how to undo: %q", out)
			}
			if tc.client == "apt" && !strings.Contains(errOut, "99other also sets Acquire::http::Proxy") {
				t.Errorf("setup apt does not warn about 99other: %q", errOut)
			}
		})
	}
	if fi, _ := os.Stat(filepath.Join(root, "etc/dnf/dnf.conf")); fi.Mode().Perm() != 0o600 {
		t.Errorf("dnf.conf mode %v, want 0600 kept", fi.Mode().Perm())
	}
	if _, _, err := runCLI(t, "setup", "--undo", "--root", root); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/dnf/dnf.conf")); string(b) != dnf {
		t.Errorf("dnf.conf after undo = %q, want %q", b, dnf)
	}
	for _, f := range []string{"etc/apt/apt.conf.d/01pkgswarm-proxy", "etc/urpmi/proxy.cfg"} {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after undo (%v)", f, err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"setup", "yum", "--root", root}, "want apt, urpmi or dnf"},
		{[]string{"setup", "apt", "--root", root, "--proxy", "127.0.0.1:3142"}, "want http://HOST:PORT"},
		{[]string{"setup", "dnf", "--root", t.TempDir()}, "is dnf installed here?"},
		{[]string{"setup", "--root", root}, "name the client"},
	} {
		if _, _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	// A file of that name not written by pkgswarm is left alone.
	os.WriteFile(filepath.Join(root, "etc/apt/apt.conf.d/01pkgswarm-proxy"), []byte("// mine\n"), 0o644)
	if _, _, err := runCLI(t, "setup", "apt", "--root", root); err == nil || !strings.Contains(err.Error(), "not written by pkgswarm") {
		t.Errorf("setup over a foreign file: %v", err)
	}
}

// TestSetupAptThenRealAptGoesThroughProxy: `setup apt --root DIR` writes
// the snippet, and an apt-get reading DIR's apt.conf.d (and no proxy of its
// own) fetches through pkgswarm, as the node's counters show.
func TestSetupAptThenRealAptGoesThroughProxy(t *testing.T) {
	n := newOpNode(t, nil)
	root := t.TempDir()
	parts := filepath.Join(root, "etc/apt/apt.conf.d")
	os.MkdirAll(parts, 0o755)
	if _, _, err := runCLI(t, "setup", "apt", "--root", root, "--proxy", n.URL); err != nil {
		t.Fatal(err)
	}
	// aptenv writes its own apt.conf; the last Dir::Etc::Parts wins, so
	// apt reads the snippet setup wrote, and nothing else sets a proxy.
	c := aptenv.New(t, aptenv.Options{Config: []string{`Dir::Etc::Parts "` + parts + `";`},
		Sources: []aptenv.Source{{URL: n.origin.URL, Keyring: n.repo.Key.KeyringPath, Suite: n.repo.Suite}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf, err := c.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if conf["acquire::http::proxy"] != n.URL {
		t.Fatalf("apt's Acquire::http::Proxy = %q, want %q from the snippet", conf["acquire::http::proxy"], n.URL)
	}
	n.aptDownload(t, c, "alpha", "charlie")
	st := n.State()
	if st.Requests["miss"] == 0 || st.Served["origin"] < n.repo.Debs["alpha"].Size+n.repo.Debs["charlie"].Size || len(st.Repos) != 1 {
		t.Fatalf("the node saw no apt traffic: requests %v, served %v, repositories %d", st.Requests, st.Served, len(st.Repos))
	}
	if _, _, err := runCLI(t, "setup", "apt", "--undo", "--root", root); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(parts); len(entries) != 0 {
		t.Fatalf("apt.conf.d not empty after undo: %v", entries)
	}
}

// TestSetupHelpChangesNothing is issue 10 item 5 as reported: `pkgswarm
// setup apt --help` wrote /etc/apt/apt.conf.d/01pkgswarm-proxy. Each help
// line runs in a mount namespace of its own where a test directory stands
// over /etc/apt, so the real one is never at risk, whatever the code does;
// the lines with --root act on a test system. Nothing may change in either.
func TestSetupHelpChangesNothing(t *testing.T) {
	needRoot(t, "it runs setup in a mount namespace of its own, with a test directory over /etc/apt")
	needTools(t, "unshare", "mount", "sh")
	etcApt := t.TempDir() // stands for /etc/apt
	os.Mkdir(filepath.Join(etcApt, "apt.conf.d"), 0o755)
	os.WriteFile(filepath.Join(etcApt, "apt.conf.d", "70debconf"), []byte("// ours\n"), 0o644)
	root := t.TempDir() // a system set up by pkgswarm, for --undo
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/urpmi", "etc/dnf"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "etc/dnf/dnf.conf"), []byte("[main]\ngpgcheck=1\n"), 0o644)
	for _, client := range []string{"apt", "urpmi"} {
		if out, errOut, code := runPkgswarm(t, runOpts{}, "setup", "--root", root, client); code != 0 {
			t.Fatalf("setup --root %s %s: exit %d\n%s%s", root, client, code, out, errOut)
		}
	}
	// mount --bind fake /etc/apt, in a namespace that dies with the command.
	inNamespace := runOpts{wrap: []string{"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount --bind "$0" /etc/apt && exec "$@"`, etcApt}}
	real := snapshot(t, "/etc/apt/apt.conf.d")
	before := snapshot(t, etcApt, root)
	want, _, _ := runPkgswarm(t, runOpts{}, "setup", "--help")

	for _, args := range [][]string{
		{"setup", "apt", "--help"},
		{"setup", "apt", "-h"},
		{"setup", "--proxy", "http://10.0.0.5:3142", "apt", "--help"},
		{"setup", "apt", "--proxy", "http://10.0.0.5:3142", "-h"},
		{"setup", "apt", "--undo", "--help"},
		{"setup", "--undo", "-h"},
		{"setup", "--root", root, "apt", "--help"},
		{"setup", "--root", root, "apt", "--undo", "--help"},
		{"setup", "apt", "--root", root, "-h", "--undo"},
		{"setup", "--root", root, "--undo", "urpmi", "-h"},
		{"setup", "--root", root, "dnf", "--help=true"},
	} {
		out, errOut, code := runPkgswarm(t, inNamespace, args...)
		if code != 0 || out != want {
			t.Errorf("pkgswarm %q: exit %d, want 0 and setup's help\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
		if d := diffSnapshots(before, snapshot(t, etcApt, root)); len(d) > 0 {
			t.Fatalf("pkgswarm %q changed files: %s", args, strings.Join(d, "; "))
		}
	}
	if d := diffSnapshots(real, snapshot(t, "/etc/apt/apt.conf.d")); len(d) > 0 {
		t.Fatalf("the real /etc/apt/apt.conf.d changed: %s", strings.Join(d, "; "))
	}

	// The namespace does stand over /etc/apt: without --help, setup apt
	// writes there (and only there).
	if out, errOut, code := runPkgswarm(t, inNamespace, "setup", "apt"); code != 0 || !strings.Contains(out, "wrote /etc/apt/apt.conf.d/01pkgswarm-proxy") {
		t.Fatalf("setup apt in the namespace: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(etcApt, "apt.conf.d", "01pkgswarm-proxy")); err != nil {
		t.Fatalf("setup apt in the namespace did not write over the test directory: %v", err)
	}
	if d := diffSnapshots(real, snapshot(t, "/etc/apt/apt.conf.d")); len(d) > 0 {
		t.Fatalf("the real /etc/apt/apt.conf.d changed: %s", strings.Join(d, "; "))
	}
}

// TestSetupUndoHintNamesRoot: `setup --root DIR CLIENT` says how to undo
// with --root DIR (quoted for the shell), and that line, run by a shell,
// undoes it under DIR.
func TestSetupUndoHintNamesRoot(t *testing.T) {
	needTools(t, "sh")
	bin := pkgswarmDir(t)
	for _, name := range []string{"plain", "it's a root"} {
		root := filepath.Join(t.TempDir(), name)
		for _, d := range []string{"etc/apt/apt.conf.d", "etc/dnf"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		for _, client := range []string{"apt", "dnf"} {
			out, errOut, code := runPkgswarm(t, runOpts{}, "setup", "--root", root, client)
			if code != 0 {
				t.Fatalf("setup --root %q %s: exit %d\n%s%s", root, client, code, out, errOut)
			}
			_, hint, ok := strings.Cut(strings.TrimSpace(out), "(undo: ")
			hint = strings.TrimSuffix(hint, ")")
			if want := "pkgswarm setup " + client + " --undo --root " + shellQuote(root); !ok || hint != want {
				// Never run a hint without --root: it would act on this machine.
				t.Fatalf("setup --root %q %s says\n%s\nwant the undo hint %q", root, client, out, want)
			}
			cmd := exec.Command("sh", "-c", hint)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), mainArgsEnv+"=-", "GORACE=atexit_sleep_ms=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sh -c %q: %v\n%s", hint, err, b)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "etc/apt/apt.conf.d/01pkgswarm-proxy")); !os.IsNotExist(err) {
			t.Errorf("after the undo hint, 01pkgswarm-proxy under %q is still there (%v)", root, err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/dnf/dnf.conf")); !os.IsNotExist(err) {
			t.Errorf("after the undo hint, the dnf.conf setup created under %q is still there (%v)", root, err)
		}
	}
}
