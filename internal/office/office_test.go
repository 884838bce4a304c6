package office

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// TestMain makes this test binary a node program when the harness
// re-executes it: a tiny server (childServer) stands in for pkgswarm, so the
// harness is tested without it.
func TestMain(m *testing.M) {
	Child(childServer)
	os.Exit(m.Run())
}

// childServer serves the health path with the id it was given and echoes
// its arguments at /args, until ctx ends.
func childServer(ctx context.Context, argv []string) error {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	listen := fs.String("listen", ":3142", "")
	id := fs.String("id", "", "")
	if err := fs.Parse(argv[1:]); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_pkgswarm/v1/node", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"id": *id})
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(argv[1:])
	})
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Println("child serving on", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Println("child stopped")
	return nil
}

var smallRepo = []testrepo.Package{{Name: "tiny", Version: "1", Size: 4096, Seed: 1}}

// TestListenAndDialAcrossTheLAN serves HTTP from the test process on one
// host's address and fetches it through another host's client, across the
// lab's bridge.
func TestListenAndDialAcrossTheLAN(t *testing.T) {
	lab := netlab.New(t, "dial")
	lan := lab.AddLAN("lan", "10.78.1.0/24")
	a, b := lab.AddHost("a", lan), lab.AddHost("b", lan)
	ln, err := listenIn(a.Namespace(), "tcp", net.JoinHostPort(a.IP().String(), "8080"))
	if err != nil {
		t.Fatal(err)
	}
	var remote atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote.Store(r.RemoteAddr)
		io.WriteString(w, "hello from a")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	resp, err := HTTPClient(b).Do(req)
	if err != nil {
		t.Fatalf("GET from b: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from a" {
		t.Errorf("body %q", body)
	}
	host, _, _ := net.SplitHostPort(remote.Load().(string))
	if host != b.IP().String() {
		t.Errorf("server saw the request from %s; want b's address %s", host, b.IP())
	}
}

// TestOrigin checks the origin's relay: reachable at its lab URL from a
// host of the LAN, logged, and down while stopped.
func TestOrigin(t *testing.T) {
	o := New(t, Options{Name: "origin", Packages: smallRepo})
	client := o.Lab().AddHost("client", o.LAN())
	c := HTTPClient(client)
	get := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.Origin.URL+"/dists/stable/InRelease", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	if code, err := get(); err != nil || code != 200 {
		t.Fatalf("GET InRelease at %s: %d, %v; want 200", o.Origin.URL, code, err)
	}
	if n := o.Origin.Requests("/InRelease"); n != 1 {
		t.Errorf("origin logged %d GETs of InRelease; want 1", n)
	}
	if !strings.HasPrefix(o.Origin.URL, "http://10.77.0.1") {
		t.Errorf("origin URL %s; want the origin host's address 10.77.0.1", o.Origin.URL)
	}
	o.Origin.Stop()
	c.CloseIdleConnections()
	if code, err := get(); err == nil {
		t.Errorf("GET while the origin is stopped: %d; want a broken connection", code)
	}
	if err := o.Origin.Start(); err != nil {
		t.Fatal(err)
	}
	if code, err := get(); err != nil || code != 200 {
		t.Errorf("GET after Start: %d, %v; want 200", code, err)
	}
}

// TestAptInNamespace runs apt-get inside a lab host, straight to the
// origin's lab address (no proxy).
func TestAptInNamespace(t *testing.T) {
	o := New(t, Options{Name: "apt", Packages: smallRepo})
	h := o.Lab().AddHost("client", o.LAN())
	a, err := NewApt(h, t.TempDir(), aptenv.Options{Sources: []aptenv.Source{o.AptSource()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Download(ctx, "tiny"); err != nil {
		t.Fatal(err)
	}
	got, err := a.Archives()
	if err != nil {
		t.Fatal(err)
	}
	deb := o.Repo.Debs["tiny"]
	if got[deb.FileName()] != deb.SHA256 {
		t.Errorf("archives %v; want %s with SHA-256 %s", got, deb.FileName(), deb.SHA256)
	}
	if n := o.Origin.Requests(deb.Path); n != 1 {
		t.Errorf("origin logged %d GETs of %s; want 1", n, deb.Path)
	}
	// An unknown package is an apt error, quoted.
	_, err = a.Download(ctx, "no-such-package")
	var aerr *aptenv.Error
	if !errors.As(err, &aerr) || !strings.Contains(err.Error(), "no-such-package") {
		t.Errorf("download of a missing package: %v; want an *aptenv.Error naming it", err)
	}
}

// TestNodes runs nodes with a program of our own (this binary re-executed,
// see TestMain) and checks start, arguments, Kill, Restart and Stop.
func TestNodes(t *testing.T) {
	o := New(t, Options{Name: "nodes", Nodes: 2, Packages: smallRepo, Program: Program{
		Args: func(n *Node) []string { return []string{"--listen", ":3142", "--id", n.Name} },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range o.Nodes() {
		if !n.Running() {
			t.Fatalf("%s is not running after New", n.Name)
		}
		body, err := n.Get(ctx, "/args")
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		json.Unmarshal(body, &args)
		if want := []string{"--listen", ":3142", "--id", n.Name}; !slices.Equal(args, want) {
			t.Errorf("%s got args %q; want %q", n.Name, args, want)
		}
	}
	// Node 0 reaches node 1 at its LAN URL from inside its namespace.
	n0, n1 := o.Node(0), o.Node(1)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n1.URL()+"/_pkgswarm/v1/node", nil)
	resp, err := n0.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("node0 → node1: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"node1"`) {
		t.Errorf("node1 answered %q; want its id", body)
	}

	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	if n1.Running() {
		t.Error("node1 runs after Kill")
	}
	if _, err := n1.Get(ctx, "/args"); err == nil {
		t.Error("GET on a killed node succeeded")
	}
	if err := n1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n1.Start(ctx); err == nil {
		t.Error("Start on a running node: no error")
	}
	if err := n1.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Get(ctx, "/args"); err != nil {
		t.Errorf("after Restart: %v", err)
	}
	if err := n0.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n0.Log(), "child stopped") {
		t.Errorf("node0 did not stop cleanly on SIGTERM; log:\n%s", n0.Log())
	}
	// node1 lived three times (New, Start after Kill, Restart): each life's
	// log is kept, the latest last and equal to Log.
	logs := n1.Logs()
	if len(logs) != 3 {
		t.Fatalf("node1 has %d logs; want 3 (one per life)", len(logs))
	}
	for i, l := range logs {
		if !strings.Contains(l, "child serving on") {
			t.Errorf("node1's log of life %d: %q; want its start line", i+1, l)
		}
	}
	if logs[2] != n1.Log() {
		t.Errorf("node1's last log %q is not Log() %q", logs[2], n1.Log())
	}
	if l := n0.Logs(); len(l) != 1 {
		t.Errorf("node0 has %d logs; want 1", len(l))
	}
}

// TestNodeThatExits reports a program that dies at start with its log.
func TestNodeThatExits(t *testing.T) {
	o := New(t, Options{Name: "exits", Nodes: 1, Packages: smallRepo, NoStart: true, Program: Program{
		Args: func(*Node) []string { return []string{"--no-such-flag"} },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := o.Node(0).Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited before answering") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("Start of a program that exits: %v; want an error with its log", err)
	}
}

func TestServeArgs(t *testing.T) {
	o := New(t, Options{Name: "args", Nodes: 3, Packages: smallRepo, StaticPeers: true, NoStart: true,
		ExtraArgs: []string{"--hold", "2s"}})
	args := o.Node(1).ServeArgs()
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"serve ", "--system-keyrings=false", "--keyring " + o.Repo.Key.KeyringPath,
		"--allow-ports 80", "--mdns=false", "--announce-apt-proxy=false", "--mdns-interface eth0",
		"--data-dir " + o.Node(1).DataDir,
		"--peer " + o.Node(0).URL(), "--peer " + o.Node(2).URL(),
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("serve args %q lack %q", joined, want)
		}
	}
	if strings.Contains(joined, "--peer "+o.Node(1).URL()) {
		t.Errorf("node1 is its own peer: %q", joined)
	}
	if !strings.HasSuffix(joined, "--hold 2s") {
		t.Errorf("extra args not last: %q", joined)
	}
}

func TestCleanEnv(t *testing.T) {
	got := cleanEnv([]string{"PATH=/bin", "http_proxy=x", "HTTPS_PROXY=y", "PKGSWARM_MDNS=false", "PKGSWARM_OFFICE_ARGS=[]", "HOME=/root"})
	if want := []string{"PATH=/bin", "HOME=/root"}; !slices.Equal(got, want) {
		t.Errorf("cleanEnv: %q; want %q", got, want)
	}
}

func TestArgsRoundTrip(t *testing.T) {
	for _, args := range [][]string{nil, {}, {"serve", "--peer", "http://10.0.0.2:3142"}, {"a b", `q"uote`, "ünï", ""}} {
		got, err := decodeArgs(encodeArgs(args))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, args) && !(len(got) == 0 && len(args) == 0) {
			t.Errorf("round trip of %q gave %q", args, got)
		}
	}
}

func FuzzDecodeArgs(f *testing.F) {
	for _, s := range []string{`[]`, `["serve","--listen",":3142"]`, `null`, `{}`, `["a",1]`, ``, `[`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		args, err := decodeArgs(raw)
		if err != nil {
			if !strings.Contains(err.Error(), childEnv) {
				t.Errorf("error %q does not name %s", err, childEnv)
			}
			return
		}
		if args == nil {
			t.Error("nil args without an error")
		}
		again, err := decodeArgs(encodeArgs(args))
		if err != nil || !slices.Equal(again, args) {
			t.Errorf("re-encoding %q gave %q, %v", args, again, err)
		}
	})
}

func TestRun(t *testing.T) {
	t.Run("pass", func(t *testing.T) {
		var order []string
		var dir string
		var out strings.Builder
		err := Run("bench", &out, func(tb testing.TB) {
			tb.Cleanup(func() { order = append(order, "first") })
			tb.Cleanup(func() { order = append(order, "second") })
			dir = tb.TempDir()
			tb.Logf("working in %s", dir)
			if tb.Context().Err() != nil {
				tb.Error("context cancelled while running")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"second", "first"}; !slices.Equal(order, want) {
			t.Errorf("cleanups ran %v; want %v", order, want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("TempDir %s not removed: %v", dir, err)
		}
		if !strings.Contains(out.String(), "bench: working in") {
			t.Errorf("log %q", out.String())
		}
	})
	t.Run("fatal", func(t *testing.T) {
		after := false
		cleaned := false
		err := Run("bench", io.Discard, func(tb testing.TB) {
			tb.Cleanup(func() { cleaned = true })
			tb.Errorf("first problem")
			tb.Fatalf("second problem: %d", 2)
			after = true
		})
		if err == nil || !strings.Contains(err.Error(), "first problem") || !strings.Contains(err.Error(), "second problem: 2") {
			t.Errorf("error %v; want both messages", err)
		}
		if after {
			t.Error("fn went on after Fatalf")
		}
		if !cleaned {
			t.Error("cleanup did not run after Fatalf")
		}
	})
	t.Run("skip", func(t *testing.T) {
		err := Run("bench", io.Discard, func(tb testing.TB) { tb.Skip("not root") })
		if !errors.Is(err, ErrSkipped) || !strings.Contains(err.Error(), "not root") {
			t.Errorf("error %v; want ErrSkipped with the reason", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		cleaned := false
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v; want the panic passed on", v)
			}
			if !cleaned {
				t.Error("cleanup did not run before the panic was passed on")
			}
		}()
		Run("bench", io.Discard, func(tb testing.TB) {
			tb.Cleanup(func() { cleaned = true })
			panic("boom")
		})
	})
}

func TestParseBrowse(t *testing.T) {
	out := `+;eth0;IPv4;pkgswarm-1234abcd;_apt_proxy._tcp;local
=;eth0;IPv4;pkgswarm-1234abcd;_apt_proxy._tcp;local;pkgswarm-1234abcd.local;10.77.0.2;3142;"v=1" "id=1234abcd00"
=;eth0;IPv4;short;_apt_proxy._tcp;local
-;eth0;IPv4;gone;_apt_proxy._tcp;local
=;eth0;IPv4;notxt;_apt_proxy._tcp;local;h.local;10.77.0.3;3142
`
	got := ParseBrowse(out)
	want := []Resolved{
		{Iface: "eth0", Protocol: "IPv4", Instance: "pkgswarm-1234abcd", Type: "_apt_proxy._tcp", Domain: "local",
			HostName: "pkgswarm-1234abcd.local", Address: "10.77.0.2", Port: "3142", TXT: `"v=1" "id=1234abcd00"`},
		{Iface: "eth0", Protocol: "IPv4", Instance: "notxt", Type: "_apt_proxy._tcp", Domain: "local",
			HostName: "h.local", Address: "10.77.0.3", Port: "3142"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseBrowse:\n got %+v\nwant %+v", got, want)
	}
}

func FuzzParseBrowse(f *testing.F) {
	f.Add("=;eth0;IPv4;a;_apt_proxy._tcp;local;a.local;10.0.0.1;3142;\"v=1\"\n+;eth0;IPv4;a;b;local\n")
	f.Add(";;;;;;;;;;;;\n=")
	f.Fuzz(func(t *testing.T, out string) {
		for _, r := range ParseBrowse(out) {
			if strings.Contains(r.Port, "\n") || strings.Contains(r.Address, ";") {
				t.Errorf("field crosses a line or separator: %+v", r)
			}
		}
	})
}

// TestOriginDelay checks that the relay's delay keeps the bytes intact and
// holds them back: a request and its answer cross it once each way, so a
// GET cannot complete in less than twice the delay (a lower bound only,
// which load cannot break).
func TestOriginDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	o := New(t, Options{Name: "delay", Packages: []testrepo.Package{{Name: "blob", Version: "1", Size: 3 << 20, Seed: 7}},
		OriginDelay: delay})
	client := HTTPClient(o.Lab().AddHost("client", o.LAN()))
	deb := o.Repo.Debs["blob"]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.Origin.URL+"/"+deb.Path, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil || n != deb.Size || hex.EncodeToString(h.Sum(nil)) != deb.SHA256 {
		t.Fatalf("GET %s through the delayed relay: %d bytes, %v; want %d bytes with SHA-256 %s", deb.Path, n, err, deb.Size, deb.SHA256)
	}
	if took < 2*delay {
		t.Errorf("GET took %v through a relay delaying %v each way; want at least %v", took, delay, 2*delay)
	}
	t.Logf("3 MiB through a %v-each-way relay in %v", delay, took.Round(time.Millisecond))
}

func TestCounters(t *testing.T) {
	lab := netlab.New(t, "counters")
	lan := lab.AddLAN("lan", "10.78.2.0/24")
	a, b := lab.AddHost("a", lan), lab.AddHost("b", lan)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := Counters(ctx, a, lan)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenIn(b.Namespace(), "tcp", net.JoinHostPort(b.IP().String(), "9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	c, err := dialIn(ctx, a.Namespace(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-got; n != size {
		t.Fatalf("b received %d bytes; want %d", n, size)
	}
	after, err := Counters(ctx, a, lan)
	if err != nil {
		t.Fatal(err)
	}
	if after.Tx-before.Tx < size {
		t.Errorf("a's Tx grew by %d after sending %d bytes", after.Tx-before.Tx, size)
	}
	if _, err := Counters(ctx, a, lab.AddLAN("other", "10.78.3.0/24")); err == nil {
		t.Error("Counters on a LAN the host is not on: no error")
	}
}

func TestParseLinkStats(t *testing.T) {
	out := []byte(`[{"ifindex":2,"ifname":"eth0","stats64":{"rx":{"bytes":123,"packets":1},"tx":{"bytes":456,"packets":2}}}]`)
	c, err := parseLinkStats(out, "eth0")
	if err != nil || c != (LinkCounters{Rx: 123, Tx: 456}) {
		t.Errorf("parseLinkStats: %+v, %v", c, err)
	}
	for _, tc := range []struct{ name, out, want string }{
		{"other link", `[{"ifname":"lo","stats64":{}}]`, "no link eth0 (only lo)"},
		{"no stats", `[{"ifname":"eth0"}]`, "no stats64"},
		{"not json", `oops`, "not a JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseLinkStats([]byte(tc.out), "eth0")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseLinkStats(f *testing.F) {
	f.Add([]byte(`[{"ifname":"eth0","stats64":{"rx":{"bytes":1},"tx":{"bytes":2}}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, out []byte) {
		if _, err := parseLinkStats(out, "eth0"); err != nil && err.Error() == "" {
			t.Error("empty error")
		}
	})
}

func TestParseSNMPTCP(t *testing.T) {
	const head = "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
	for _, tc := range []struct {
		in   string
		want TCPCounters
		ok   bool
	}{
		{in: head + "Tcp: RtoAlgorithm InSegs OutSegs RetransSegs InErrs\nTcp: 1 10 5000 37 0\nUdp: InDatagrams\nUdp: 3\n", want: TCPCounters{OutSegs: 5000, RetransSegs: 37}, ok: true},
		{in: head + "Tcp: OutSegs RetransSegs\n"},
		{in: "Tcp: OutSegs RetransSegs\nTcp: 5 x\n"},
		{in: "Tcp: OutSegs\nTcp: 5\n"},
		{in: "Tcp: OutSegs RetransSegs\nTcp: 5\n"},
		{in: ""},
	} {
		got, err := parseSNMPTCP([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSNMPTCP(%q) = %+v, %v; want %+v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseSNMPTCP(f *testing.F) {
	f.Add([]byte("Tcp: OutSegs RetransSegs\nTcp: 5 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		c, err := parseSNMPTCP(b)
		if err != nil && c != (TCPCounters{}) {
			t.Fatalf("error %v with counters %+v", err, c)
		}
	})
}
