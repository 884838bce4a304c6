package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/testtool"
)

// TestHelperHTTP is not a test: the lab tests run the test binary inside a
// namespace with NETLAB_HELPER_ADDR set, and this serves HTTP there, answering
// every request with the host name given in NETLAB_HELPER_NAME.
func TestHelperHTTP(t *testing.T) {
	addr := os.Getenv("NETLAB_HELPER_ADDR")
	if addr == "" {
		t.Skip("helper process for the lab tests; runs only inside a lab")
	}
	name := os.Getenv("NETLAB_HELPER_NAME")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: listen %s: %v\n", addr, err)
		os.Exit(2)
	}
	fmt.Println("listening", ln.Addr())
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	}))
	fmt.Fprintln(os.Stderr, "helper: serve:", err)
	os.Exit(1)
}

func startHTTPHelper(t *testing.T, h *Host, port int) *Proc {
	t.Helper()
	cmd := h.Command(context.Background(), os.Args[0], "-test.run=^TestHelperHTTP$")
	cmd.Env = append(cmd.Env, fmt.Sprintf("NETLAB_HELPER_ADDR=:%d", port), "NETLAB_HELPER_NAME="+h.Name())
	p, err := h.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.Log(), "listening") },
		func() string { return "helper in " + h.Name() + " did not start: " + p.Log() })
	return p
}

// waitFor polls cond until it holds or limit passes (then it fails the test
// with msg()). limit is a generous give-up point, not a performance assertion.
func waitFor(t *testing.T, limit time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func curl(h *Host, url string) (string, error) {
	out, err := h.Command(context.Background(), "curl", "-sS", "--max-time", "3", "--noproxy", "*", url).CombinedOutput()
	return string(out), err
}

func TestLabTopology(t *testing.T) {
	testtool.Need(t, "curl", "curl")
	lab := New(t, "topo")
	lanA := lab.AddLAN("a", "10.77.1.0/24")
	lanB := lab.AddLAN("b", "10.77.2.0/24")
	h1 := lab.AddHost("h1", lanA)
	h2 := lab.AddHost("h2", lanA)
	r := lab.AddRouter("r", lanA, lanB)
	h3 := lab.AddHost("h3", lanB) // made after the router: must still get a route

	if got, want := h1.IP().String(), "10.77.1.1"; got != want {
		t.Errorf("h1.IP() = %s, want %s", got, want)
	}
	if got, want := r.IPOn(lanB).String(), "10.77.2.1"; got != want {
		t.Errorf("r.IPOn(b) = %s, want %s", got, want)
	}
	if got, want := h3.IP().String(), "10.77.2.2"; got != want {
		t.Errorf("h3.IP() = %s, want %s", got, want)
	}
	if h1.Iface(lanA) != "eth0" || r.Iface(lanB) != "eth1" || h1.Iface(lanB) != "" {
		t.Errorf("interface names: h1/a=%q r/b=%q h1/b=%q", h1.Iface(lanA), r.Iface(lanB), h1.Iface(lanB))
	}

	startHTTPHelper(t, h2, 8080)
	startHTTPHelper(t, h3, 8080)

	tests := []struct {
		name string
		from *Host
		url  string
		want string // "" means the request must fail
	}{
		{"same LAN", h1, "http://10.77.1.2:8080/", "hello from h2"},
		{"through router", h1, "http://10.77.2.2:8080/", "hello from h3"},
		{"back through router", h3, "http://10.77.1.2:8080/", "hello from h2"},
		{"outside the lab is unreachable", h1, "http://192.0.2.1:80/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := curl(tc.from, tc.url)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("curl %s from %s succeeded: %s", tc.url, tc.from.Name(), out)
				}
				return
			}
			if err != nil || out != tc.want {
				t.Fatalf("curl %s from %s = %q, %v; want %q", tc.url, tc.from.Name(), out, err, tc.want)
			}
		})
	}

	t.Run("routes", func(t *testing.T) {
		out, err := exec.Command("ip", "-n", h1.Namespace(), "route", "show").CombinedOutput()
		if err != nil {
			t.Fatal(err, string(out))
		}
		routes := string(out)
		for _, want := range []string{"224.0.0.0/4 dev eth0", "10.77.2.0/24 via 10.77.1.3 dev eth0"} {
			if !strings.Contains(routes, want) {
				t.Errorf("h1 routes lack %q:\n%s", want, routes)
			}
		}
		if strings.Contains(routes, "default") {
			t.Errorf("h1 has a default route:\n%s", routes)
		}
		out, err = exec.Command("ip", "-n", h1.Namespace(), "link", "show", "lo").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "MULTICAST") {
			t.Errorf("lo in h1 is not multicast: %s %v", out, err)
		}
	})
}

// Sites behind gateways on a shared WAN reach each other: routes of two
// router hops.
func TestLabTwoHops(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	s := newTwoSites(t, "hops", 0)
	a, b := s.a, s.b
	startHTTPHelper(t, b, 8080)
	startHTTPHelper(t, a, 8080)
	if out, err := curl(a, "http://"+b.IP().String()+":8080/"); err != nil || out != "hello from b" {
		t.Fatalf("a → b through two gateways: %q, %v", out, err)
	}
	if out, err := curl(b, "http://"+a.IP().String()+":8080/"); err != nil || out != "hello from a" {
		t.Fatalf("b → a through two gateways: %q, %v", out, err)
	}
}

func TestLabCleanupRemovesEverything(t *testing.T) {
	var prefix string
	t.Run("lab", func(t *testing.T) {
		lab := New(t, "clean")
		prefix = lab.prefix
		lan := lab.AddLAN("lan", "10.77.3.0/24")
		h := lab.AddHost("h", lan)
		if _, err := h.Start(context.Background(), "sleep", "300"); err != nil {
			t.Fatal(err)
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Fatalf("namespaces with prefix %s remain after cleanup:\n%s", prefix, out)
	}
}

func TestLabRemovesStaleNamespaces(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	// A pid above the kernel's limit (4194304) never runs.
	stale := nsPrefix + "stale-9999999-abcd-h1"
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v: %s", stale, err, out)
	}
	t.Cleanup(func() { _ = deleteNetns(stale) })
	// One of a live process (ours is live; use pid 1) must survive.
	live := nsPrefix + "stale-1-abcd-h1"
	if out, err := exec.Command("ip", "netns", "add", live).CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v: %s", live, err, out)
	}
	t.Cleanup(func() { _ = deleteNetns(live) })

	New(t, "stale")
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), stale) {
		t.Errorf("stale namespace %s was not removed", stale)
	}
	if !strings.Contains(string(out), live) {
		t.Errorf("namespace %s of a live process was removed", live)
	}
}

func TestProcSignalsAndLogs(t *testing.T) {
	lab := New(t, "proc")
	lan := lab.AddLAN("lan", "10.77.4.0/24")
	h := lab.AddHost("h", lan)
	ctx := context.Background()

	p, err := h.Start(ctx, "sh", "-c", `trap 'echo got term; exit 3' TERM; echo started; while :; do sleep 0.1; done`)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.Log(), "started") },
		func() string { return "no output: " + p.Log() })
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait after SIGTERM = %v, want exit status 3", err)
	}
	if !strings.Contains(p.Log(), "got term") {
		t.Errorf("log lacks the trap's output: %q", p.Log())
	}

	p2, err := h.Start(ctx, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Kill(); err != nil {
		t.Fatal(err)
	}
	if !p2.Exited() {
		t.Fatal("process still running after Kill")
	}

	// Command runs in the namespace: its only addresses are the lab's.
	out, err := h.Command(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.77.4.1/24") {
		t.Fatalf("ip addr in namespace: %s %v", out, err)
	}
}

func TestShape(t *testing.T) {
	lab := New(t, "shape")
	lan := lab.AddLAN("lan", "10.77.5.0/24")
	h := lab.AddHost("h", lan)
	if err := h.Shape(lan, "50mbit"); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct{ ns, dev string }{{h.Namespace(), "eth0"}, {lan.Namespace(), "p1"}} {
		out, err := exec.Command("ip", "netns", "exec", side.ns, "tc", "qdisc", "show", "dev", side.dev).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "50Mbit") {
			t.Errorf("qdisc on %s in %s: %s %v", side.dev, side.ns, out, err)
		}
	}
	if out, in, err := h.ShaperDrops(lan); err != nil || out != 0 || in != 0 {
		t.Errorf("a link nothing crossed: drops %d out, %d in, %v", out, in, err)
	}
	if _, _, err := h.ShaperDrops(lab.AddLAN("unshaped", "10.77.7.0/24")); err == nil {
		t.Error("ShaperDrops of a LAN the host is not on")
	}
	if err := h.Shape(lan, "fast"); err == nil {
		t.Error("Shape accepted rate \"fast\"")
	}
	other := lab.AddLAN("other", "10.77.6.0/24")
	if err := h.Shape(other, "1mbit"); err == nil {
		t.Error("Shape accepted a LAN the host is not on")
	}
}

func TestParseQdiscDrops(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{in: `[{"kind":"tbf","handle":"9150:","root":true,"bytes":90,"packets":1,"drops":7,"overlimits":0}]`, want: 7, ok: true},
		{in: `[{"kind":"noqueue","drops":3},{"kind":"tbf","drops":2},{"kind":"tbf","drops":5}]`, want: 7, ok: true},
		{in: `[]`, ok: true},
		{in: `{"kind":"tbf"}`},
		{in: `[{"kind":"tbf","drops":-1}]`},
		{in: ``},
	} {
		got, err := parseQdiscDrops([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseQdiscDrops(%s) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseQdiscDrops(f *testing.F) {
	f.Add([]byte(`[{"kind":"tbf","drops":7}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		n, err := parseQdiscDrops(b)
		if err != nil && n != 0 {
			t.Fatalf("error %v with a count %d", err, n)
		}
	})
}

func TestAddAddr(t *testing.T) {
	lab := New(t, "addaddr")
	lan := lab.AddLAN("lan", "10.77.7.0/24")
	h := lab.AddHost("h", lan)
	for _, a := range []string{"fd77:7::1/64", "fe80::77/64", "10.77.8.1/24"} {
		if err := h.AddAddr(lan, a); err != nil {
			t.Fatal(err)
		}
	}
	out, err := h.Command(context.Background(), "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in namespace: %s %v", out, err)
	}
	for _, want := range []string{"10.77.7.1/24", "fd77:7::1/64", "fe80::77/64", "10.77.8.1/24"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("eth0 has no %s:\n%s", want, out)
		}
	}
	// No duplicate address detection: the IPv6 ones are usable at once.
	if strings.Contains(string(out), "fd77:7::1/64 scope global tentative") {
		t.Errorf("fd77:7::1 is tentative (DAD ran):\n%s", out)
	}
	if got := h.IP().String(); got != "10.77.7.1" {
		t.Errorf("IP() = %s after AddAddr; want the first address 10.77.7.1", got)
	}
	if err := h.AddAddr(lan, "fd77:7::2"); err == nil {
		t.Error("AddAddr accepted an address without a prefix length")
	}
	other := lab.AddLAN("other", "10.77.9.0/24")
	if err := h.AddAddr(other, "fd77:9::1/64"); err == nil {
		t.Error("AddAddr accepted a LAN the host is not on")
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"50mbit", 50e6, false},
		{"1gbit", 1e9, false},
		{"512kbit", 512e3, false},
		{"9600bit", 9600, false},
		{"1.5mbit", 1.5e6, false},
		{"", 0, true},
		{"mbit", 0, true},
		{"-1mbit", 0, true},
		{"50mbps", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseRate(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseRate(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Node-1", "node1"},
		{"a_very_long_name_indeed", "averylongnamein"},
		{"---", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := sanitize(tc.in, 15); got != tc.want {
				t.Fatalf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestDelay checks that gateways that delay hold what they forward: two
// sites behind gateways of 15 ms each are 60 ms apart in round-trip time,
// which a TCP handshake across them cannot beat, and the body still arrives.
func TestDelay(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	s := newTwoSites(t, "delay", 8)
	a, b, gwa, gwb := s.a, s.b, s.gwa, s.gwb
	if err := a.Delay(time.Millisecond); err == nil {
		t.Error("Delay on a host that is not a router")
	}
	if err := gwa.Delay(0); err == nil {
		t.Error("Delay of 0")
	}
	for _, gw := range []*Host{gwa, gwb} {
		if err := gw.Delay(15 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	startHTTPHelper(t, b, 8080)
	for range 3 {
		out, err := a.Command(context.Background(), "curl", "-sS", "--max-time", "5", "--noproxy", "*",
			"-w", " %{time_connect}", "http://"+b.IP().String()+":8080/").CombinedOutput()
		if err != nil {
			t.Fatalf("a → b through two delaying gateways: %s %v", out, err)
		}
		i := strings.LastIndexByte(string(out), ' ')
		body, connect := string(out[:max(i, 0)]), string(out[i+1:])
		if body != "hello from b" {
			t.Fatalf("a → b: body %q", body)
		}
		secs, err := strconv.ParseFloat(connect, 64)
		if err != nil {
			t.Fatalf("curl's time_connect %q: %v", connect, err)
		}
		if rtt := time.Duration(secs * float64(time.Second)); rtt < 60*time.Millisecond {
			t.Errorf("TCP handshake across two gateways of 15 ms took %v; want at least 60ms", rtt)
		}
	}
	// A bulk transfer through both delay lines and a shaper arrives whole and
	// in order.
	if err := gwa.Shape(s.wan, "200mbit"); err != nil {
		t.Fatal(err)
	}
	t.Logf("8 MiB across two delaying gateways in %v", s.transfer(t, 8<<20))
}

// twoSites is two hosts, a and b, each on a site LAN behind a gateway of
// its own (gwa, gwb) on a shared WAN.
type twoSites struct {
	wan      *LAN
	a, b     *Host
	gwa, gwb *Host
}

// newTwoSites builds them in subnets 10.78.<o>.0/24 (WAN), <o+1> and <o+2>.
func newTwoSites(tb testing.TB, name string, o int) *twoSites {
	lab := New(tb, name)
	subnet := func(i int) string { return fmt.Sprintf("10.78.%d.0/24", o+i) }
	s := &twoSites{wan: lab.AddLAN("wan", subnet(0))}
	siteA, siteB := lab.AddLAN("sa", subnet(1)), lab.AddLAN("sb", subnet(2))
	s.a = lab.AddHost("a", siteA)
	s.gwa = lab.AddRouter("gwa", siteA, s.wan)
	s.gwb = lab.AddRouter("gwb", siteB, s.wan)
	s.b = lab.AddHost("b", siteB)
	return s
}

// transfer sends n random bytes from b to a over one TCP connection made
// from the test process inside the two namespaces, checks that they arrive
// whole and in order, and returns how long that took.
func (s *twoSites) transfer(tb testing.TB, n int) time.Duration {
	tb.Helper()
	var ln net.Listener
	if err := InNetns(s.b.Namespace(), func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(s.b.IP().String(), "9000"))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, n)
	rand.Read(want)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write(want)
	}()
	var c net.Conn
	if err := InNetns(s.a.Namespace(), func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, want) {
		tb.Fatalf("%d bytes across two gateways: got %d, equal %v, %v", n, len(got), bytes.Equal(got, want), err)
	}
	return time.Since(start)
}

// BenchmarkShapedFlow is one bulk TCP flow between two sites whose gateways
// shape their WAN links to 20 Mbit/s, with and without each gateway holding
// what it forwards 10 ms (sites 40 ms apart): what one flow can get from the
// many-sites benchmark's links (docs/benchmarks-fleet.md). Needs root:
//
//	go test ./internal/netlab -run '^$' -bench ShapedFlow -benchtime 1x
func BenchmarkShapedFlow(b *testing.B) {
	for _, d := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run("delay="+d.String(), func(b *testing.B) {
			s := newTwoSites(b, "flow", 12)
			for _, gw := range []*Host{s.gwa, s.gwb} {
				if err := gw.Shape(s.wan, "20mbit"); err != nil {
					b.Fatal(err)
				}
				if d > 0 {
					if err := gw.Delay(d); err != nil {
						b.Fatal(err)
					}
				}
			}
			const n = 40 << 20
			var took time.Duration
			for b.Loop() {
				took += s.transfer(b, n)
			}
			b.ReportMetric(float64(n)*8*float64(b.N)/took.Seconds()/1e6, "Mbit/s")
		})
	}
}
