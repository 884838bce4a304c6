package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These helpers run the real pkgswarm command: this test binary, whose
// TestMain calls main() when mainArgsEnv is set. A run happens in its own
// process, so a command that changes its user (or serves) cannot touch the
// test's own process.

// pkgswarmDir returns a directory holding this test binary as "pkgswarm",
// for a shell that runs the lines pkgswarm prints with PATH=DIR:….
func pkgswarmDir(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "pkgswarm")); err != nil {
		t.Fatal(err)
	}
	return bin
}

// needRoot skips a test that needs root when the tests do not run as root.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root (%s); run the tests as root", why)
	}
}

// debianPackage names the Debian package of each tool needTools is asked for.
var debianPackage = map[string]string{"unshare": "util-linux", "mount": "mount", "sh": "dash", "bash": "bash",
	"apt-get": "apt", "gpg": "gpg", "gpgconf": "gpgconf", "dpkg-deb": "dpkg"}

// needTools skips the test when a program it drives is missing, and fails
// it instead under CI=true, where every test must run.

func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		testtool.Need(t, n, debianPackage[n])
	}
}

// runOpts is how pkgswarmCmd runs the command.
type runOpts struct {
	exe  string              // the executable; "" = this test binary
	cred *syscall.Credential // nil = the test's user
	wrap []string            // programs and arguments to run the command under (e.g. unshare …)
	// timeout bounds runPkgswarm (0: a minute).
	timeout time.Duration
	env     []string // added to the environment (after PKGSWARM_ variables are removed)
}

// pkgswarmCmd returns the command line `pkgswarm args...` as a process:
// this test binary as main(), with pkgswarm's and proxy variables removed
// from the environment.
func pkgswarmCmd(t *testing.T, ctx context.Context, o runOpts, args ...string) *exec.Cmd {
	t.Helper()
	exe := o.exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	argv := append(slices.Clone(o.wrap), exe)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PKGSWARM_") || strings.HasSuffix(strings.ToLower(name), "_proxy") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(append(cmd.Env, o.env...), mainArgsEnv+"="+string(raw))
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// A race-enabled binary otherwise sleeps a second at exit.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	if o.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
	return cmd
}

// runPkgswarm runs `pkgswarm args...` to its end (at most o.timeout) and
// returns what it printed and its exit status.
func runPkgswarm(t *testing.T, o runOpts, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := pkgswarmCmd(t, ctx, o, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("pkgswarm %q did not end within %v (killed)\nstdout:\n%s\nstderr:\n%s", args, o.timeout, out.String(), errOut.String())
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running pkgswarm %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// userBinary is a copy of this test binary that another user can run: go
// test keeps the binary in a directory only its user can enter.
func userBinary(t *testing.T, dir string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "pkgswarm.test")
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// worldDir is a new directory under the system's temporary directory that
// every user can enter (t.TempDir's parent is its user's only).
func worldDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pkgswarm-"+regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// servedNode is a `pkgswarm serve` process that has said it serves.
type servedNode struct {
	addr   string // host:port it listens on
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer // protected by mu
	done   chan error
}

var listenRE = regexp.MustCompile(`msg="pkgswarm serving" listen=(\S+)`)

// startServe starts `pkgswarm serve` on a free loopback port, without mDNS
// or swarm, and waits until it logs that it serves (at most a minute). The
// node is stopped at the end of the test if stop was not called.
func startServe(t *testing.T, o runOpts, args ...string) *servedNode {
	t.Helper()
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--mdns=false", "--swarm", "off",
		"--system-keyrings=false", "--log-format", "text"}, args...)
	s := &servedNode{cmd: pkgswarmCmd(t, context.Background(), o, all...), done: make(chan error, 1)}
	pr, pw := io.Pipe()
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting pkgswarm serve: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := s.cmd.Wait()
		pw.Close()
		s.done <- err
	}()
	t.Cleanup(func() { s.stop() })
	select {
	case s.addr = <-addr:
		return s
	case err := <-s.done:
		s.done <- err
		t.Fatalf("pkgswarm %q exited before serving: %v\n%s", all, err, s.log())
	case <-time.After(time.Minute):
		t.Fatalf("pkgswarm %q did not serve within a minute\n%s", all, s.log())
	}
	return nil
}

func (s *servedNode) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// stop ends serve with SIGTERM, as systemctl stop does, and returns its
// exit error.
func (s *servedNode) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return errors.New("serve did not stop within 30 s of SIGTERM")
	}
}

// status is the node's status document.
func (s *servedNode) status(t *testing.T) status.Status {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + s.addr + "/_pkgswarm/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("status of the node at %s: %v", s.addr, err)
	}
	return st
}

// fileState is what the tests compare to say a file did not change.
type fileState struct {
	mode    fs.FileMode
	uid     uint32
	gid     uint32
	size    int64
	mtime   time.Time
	content string // regular files: the bytes; symlinks: the target
}

// snapshot records every file under each root (a missing root is recorded
// as missing).
func snapshot(t *testing.T, roots ...string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				out[p] = fileState{content: "(missing)"}
				return nil
			}
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			fsst := fileState{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, size: fi.Size(), mtime: fi.ModTime()}
			switch {
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				fsst.content = string(b)
			case fi.Mode()&fs.ModeSymlink != 0:
				fsst.content, _ = os.Readlink(p)
			}
			out[p] = fsst
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// diffSnapshots lists what changed between two snapshots.
func diffSnapshots(before, after map[string]fileState) []string {
	var out []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			out = append(out, "removed "+p)
		case a != b:
			out = append(out, fmt.Sprintf("changed %s: %+v -> %+v", p, shortState(b), shortState(a)))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, "created "+p)
		}
	}
	return out
}

func shortState(s fileState) fileState {
	if len(s.content) > 40 {
		s.content = s.content[:40] + "…"
	}
	return s
}
