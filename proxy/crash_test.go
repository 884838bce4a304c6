package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	originpkg "github.com/pkgswarm/pkgswarm/proxy/fetch/origin"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// Environment of a child proxy process (see TestMain).
const (
	envChildDir     = "PKGSWARM_TEST_CHILD_DIR"
	envChildKeyring = "PKGSWARM_TEST_CHILD_KEYRING"
	envChildPort    = "PKGSWARM_TEST_CHILD_ORIGIN_PORT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChildDir); dir != "" {
		os.Exit(runChildProxy(dir))
	}
	os.Exit(m.Run())
}

// runChildProxy serves a proxy on a loopback port until killed, printing
// "listening ADDR" once ready. It is this test binary re-executed, so a
// test can kill -9 a real proxy process.
func runChildProxy(dir string) int {
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	kr, err := apt.LoadKeyring(os.Getenv(envChildKeyring))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	port, _ := strconv.Atoi(os.Getenv(envChildPort))
	n, err := node.New(node.Config{Store: st, AptKeyring: kr, AllowPorts: []int{port}, Egress: originpkg.Egress{AllowLoopback: true},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	http.Serve(ln, n.Handler)
	return 0
}

type childProxy struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, dir, keyring string, originPort int) *childProxy {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildDir+"="+dir, envChildKeyring+"="+keyring, envChildPort+"="+strconv.Itoa(originPort))
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child proxy did not start: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if !ok {
		t.Fatalf("child proxy said %q", line)
	}
	return &childProxy{cmd: cmd, addr: addr}
}

// TestKill9DuringDownloads kills the proxy process while ten downloads run,
// restarts it on the same directory, and checks that every later response
// is whole and correct: nothing partial or unverified survives a crash.
func TestKill9DuringDownloads(t *testing.T) {
	const files = 10
	var pkgs []testrepo.Package
	for i := 0; i < files; i++ {
		pkgs = append(pkgs, testrepo.Package{Name: fmt.Sprintf("crash%d", i), Version: "1", Size: 2 << 20, Seed: int64(100 + i)})
	}
	repo := testrepo.Build(t, testrepo.Options{Packages: pkgs})
	origin := testrepo.Serve(t, repo.Dir)
	ou, _ := url.Parse(origin.URL)
	port, _ := strconv.Atoi(ou.Port())
	dir := t.TempDir()

	child := startChild(t, dir, repo.Key.KeyringPath, port)
	client := func(addr string) *http.Client {
		pu, _ := url.Parse("http://" + addr)
		return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: time.Minute}
	}
	// The root and index first, so the .debs are verified downloads.
	for _, p := range []string{repo.DistPath("InRelease"), repo.DistPath("main/binary-amd64/Packages.xz")} {
		resp, err := client(child.addr).Get(origin.URL + "/" + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", p, resp.Status)
		}
	}
	// The index parse lands in the background: wait until the node knows
	// every package's digest (a HEAD it answers from the expectation).
	for _, d := range repo.Debs {
		if !noderig.Eventually(func() bool {
			req, _ := http.NewRequest(http.MethodHead, origin.URL+"/"+d.Path, nil)
			resp, err := client(child.addr).Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.Header.Get("ETag") == `"sha256-`+d.SHA256+`"`
		}) {
			t.Fatalf("the node never learnt the digest of %s", d.Path)
		}
	}

	for _, d := range repo.Debs {
		origin.Throttle(d.Path, 1<<20) // 2 s per file: still in flight at the kill
	}
	var wg sync.WaitGroup
	for _, d := range repo.Debs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client(child.addr).Get(origin.URL + "/" + d.Path)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	// Kill once downloads are flowing (bytes in the store): as many as the
	// node opens connections to the origin at once, the rest queued.
	if !noderig.Eventually(func() bool { return flowing(child.addr) >= originpkg.DefaultMaxConnsPerHost }) {
		t.Fatal("the downloads never all started")
	}
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.cmd.Wait()
	wg.Wait()
	for _, d := range repo.Debs {
		origin.Throttle(d.Path, 0)
	}

	child = startChild(t, dir, repo.Key.KeyringPath, port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := 0; round < 2; round++ { // a miss after the crash, then a hit
		for _, d := range repo.Debs {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, origin.URL+"/"+d.Path, nil)
			resp, err := client(child.addr).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || n != d.Size || hex.EncodeToString(h.Sum(nil)) != d.SHA256 {
				t.Fatalf("round %d %s after kill -9: status %d, %d of %d bytes, sha256 %x (want %s), err %v",
					round, d.Path, resp.StatusCode, n, d.Size, h.Sum(nil), d.SHA256, err)
			}
		}
	}
	// Every blob on disk hashes to its name.
	child.cmd.Process.Kill()
	child.cmd.Wait()
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bad, err := st.Verify(ctx, nil)
	if err != nil || len(bad) != 0 {
		t.Fatalf("after kill -9: %d bad blobs, err %v", len(bad), err)
	}
}

// flowing counts the downloads of the node at addr with bytes already
// written.
func flowing(addr string) int {
	resp, err := http.Get("http://" + addr + "/_pkgswarm/status")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var st status.Status
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 0
	}
	n := 0
	for _, tr := range st.Transfers {
		if tr.Bytes > 0 {
			n++
		}
	}
	return n
}
