package discovery_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/build"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/internal/netlab"
)

// Environment of TestHelperNode.
const (
	envNodeID = "DISCOVERY_HELPER_NODE_ID"
	envPort   = "DISCOVERY_HELPER_PORT"
	envStatic = "DISCOVERY_HELPER_STATIC" // comma-separated; mDNS is off when set
	envIfaces = "DISCOVERY_HELPER_IFACES" // comma-separated Config.Interfaces
)

// TestHelperNode is not a test: the lab tests run the test binary with
// -test.run=^TestHelperNode$ inside a network namespace, one node per
// namespace (as groupcache runs its test binary as peers). It serves the
// health endpoint, runs a Discovery and prints "PEERS id,id,…" on every
// change of its peer set; SIGTERM stops it cleanly (with an mDNS goodbye).
func TestHelperNode(t *testing.T) {
	id := os.Getenv(envNodeID)
	if id == "" {
		t.Skip("helper process for the lab tests; runs only inside a lab namespace")
	}
	port, _ := strconv.Atoi(os.Getenv(envPort))
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: listen :%d: %v\n", port, err)
		os.Exit(2)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(discovery.NodeInfo{ID: id, Version: "helper"})
	}))
	cfg := discovery.Config{
		NodeID: id, Port: port, MDNS: true, AnnounceAptProxy: true,
		TXT:    map[string]string{"swarm": "6881"},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if s := os.Getenv(envStatic); s != "" {
		cfg.MDNS, cfg.AnnounceAptProxy = false, false
		cfg.Static = strings.Split(s, ",")
	}
	if s := os.Getenv(envIfaces); s != "" {
		cfg.Interfaces = strings.Split(s, ",")
	}
	d, err := discovery.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	d.Subscribe(func(discovery.Peer, bool) {
		var ids []string
		for _, p := range d.Peers() {
			ids = append(ids, p.ID)
		}
		fmt.Printf("PEERS %s\n", strings.Join(ids, ","))
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Println("READY")
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper: Run:", err)
		os.Exit(1)
	}
	fmt.Println("EXIT")
	os.Exit(0)
}

type node struct {
	id   string
	host *netlab.Host
	proc *netlab.Proc
}

func randomID(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func startNode(t *testing.T, h *netlab.Host, env ...string) *node {
	t.Helper()
	n := &node{id: randomID(t), host: h}
	cmd := h.Command(context.Background(), os.Args[0], "-test.run=^TestHelperNode$")
	cmd.Env = append(cmd.Env, envNodeID+"="+n.id, envPort+"=3142")
	cmd.Env = append(cmd.Env, env...)
	p, err := h.StartCmd(cmd)
	if err != nil {
		t.Fatal(err)
	}
	n.proc = p
	return n
}

// peers returns the node's latest peer set, as it printed it.
func (n *node) peers() []string {
	var last []string
	sc := bufio.NewScanner(strings.NewReader(n.proc.Log()))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "PEERS "); ok {
			last = nil
			if rest != "" {
				last = strings.Split(rest, ",")
			}
		} else if sc.Text() == "PEERS" {
			last = nil
		}
	}
	return last
}

// waitUntil polls cond; limit only stops a test that would hang, the time
// taken is logged, not asserted.
func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool, state func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %v; state:\n%s", what, limit, state())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func idsExcept(nodes []*node, skip ...*node) []string {
	var ids []string
	for _, n := range nodes {
		if !slices.Contains(skip, n) {
			ids = append(ids, n.id)
		}
	}
	slices.Sort(ids)
	return ids
}

func state(nodes []*node) func() string {
	return func() string {
		var b strings.Builder
		for _, n := range nodes {
			fmt.Fprintf(&b, "%s (%s): %v\n", n.host.Name(), n.id, n.peers())
		}
		return b.String()
	}
}

func TestMDNSNodesFindEachOther(t *testing.T) {
	lab := netlab.New(t, "mdns")
	lan := lab.AddLAN("lan", "10.77.10.0/24")
	var nodes []*node
	start := time.Now()
	for i := 1; i <= 5; i++ {
		h := lab.AddHost(fmt.Sprintf("n%d", i), lan)
		if i == 2 || i == 4 {
			// Without a 224.0.0.0/4 route hashicorp/mdns's client cannot
			// listen; these nodes browse with the responder's socket.
			if out, err := h.Command(context.Background(), "ip", "route", "del", "224.0.0.0/4").CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
		nodes = append(nodes, startNode(t, h))
	}
	allFound := func(live []*node) func() bool {
		return func() bool {
			for _, n := range live {
				if !slices.Equal(n.peers(), idsExcept(live, n)) {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, "5 nodes find each other by mDNS", 20*time.Second, allFound(nodes), state(nodes))
	t.Logf("5 nodes found each other %v after start (target: 5 s)", time.Since(start).Round(time.Millisecond))

	// Announcements happen at start only: nodes still listed after twice
	// ExpireAfter were refreshed by periodic browsing.
	time.Sleep(2*10*time.Second + time.Second)
	if !allFound(nodes)() {
		t.Fatalf("peers expired although alive (browsing does not refresh them):\n%s", state(nodes)())
	}
	for i, n := range nodes {
		if strings.Contains(n.proc.Log(), "peer left") {
			t.Fatalf("%s logged a peer leaving while all were alive:\n%s", n.host.Name(), n.proc.Log())
		}
		routeless := i == 1 || i == 3
		if fellBack := strings.Contains(n.proc.Log(), "querying with the responder's socket"); fellBack != routeless {
			t.Errorf("%s: fell back to the responder's queries: %v, want %v:\n%s", n.host.Name(), fellBack, routeless, n.proc.Log())
		}
	}

	// SIGKILL: no goodbye; the others must expire it.
	killed := nodes[4]
	if err := killed.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	kill := time.Now()
	live := nodes[:4]
	waitUntil(t, "a killed node drops out", 45*time.Second, allFound(live), state(live))
	t.Logf("killed node dropped out of every list %v after SIGKILL (target: 15 s)", time.Since(kill).Round(time.Millisecond))

	// SIGTERM: the node says goodbye and the others drop it at once.
	leaving := nodes[3]
	if err := leaving.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := leaving.proc.Wait(); err != nil {
		t.Fatalf("node stopped with %v:\n%s", err, leaving.proc.Log())
	}
	term := time.Now()
	live = nodes[:3]
	waitUntil(t, "a stopped node drops out", 20*time.Second, allFound(live), state(live))
	t.Logf("stopped node dropped out %v after it exited", time.Since(term).Round(time.Millisecond))
	for _, n := range live {
		if !containsLine(n.proc.Log(), "peer left", "peer="+leaving.id, "reason=goodbye") {
			t.Errorf("%s did not drop %s because of its goodbye:\n%s", n.host.Name(), leaving.id, n.proc.Log())
		}
	}
}

// TestMDNSInterfaceRestriction runs a node on two LANs that may use only
// its second interface (eth1). The host's 224.0.0.0/4 route, and so the
// group membership of hashicorp/mdns's browsing socket, is on eth0: packets
// from LAN A do reach the node's sockets and must be ignored.
func TestMDNSInterfaceRestriction(t *testing.T) {
	lab := netlab.New(t, "iface")
	lanA := lab.AddLAN("a", "10.77.13.0/24")
	lanB := lab.AddLAN("b", "10.77.14.0/24")
	mh := lab.AddHost("m", lanA, lanB)
	m := startNode(t, mh, envIfaces+"="+mh.Iface(lanB))
	a := startNode(t, lab.AddHost("ha", lanA))
	b := startNode(t, lab.AddHost("hb", lanB))
	all := []*node{m, a, b}
	waitUntil(t, "m and b find each other over LAN B", 20*time.Second, func() bool {
		return slices.Equal(m.peers(), []string{b.id}) && slices.Equal(b.peers(), []string{m.id})
	}, state(all))
	// Give LAN A several browse rounds (BrowseInterval is 2 s) to leak.
	time.Sleep(6 * time.Second)
	if !slices.Equal(m.peers(), []string{b.id}) || len(a.peers()) != 0 {
		t.Fatalf("mDNS crossed to the interface the node must not use:\n%s", state(all)())
	}
	if !strings.Contains(m.proc.Log(), "interfaces=[eth1]") {
		t.Errorf("node did not report using only eth1:\n%s", m.proc.Log())
	}
}

func containsLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestStaticPeersInLab(t *testing.T) {
	lab := netlab.New(t, "static")
	lan := lab.AddLAN("lan", "10.77.11.0/24")
	h1, h2, h3 := lab.AddHost("s1", lan), lab.AddHost("s2", lan), lab.AddHost("s3", lan)
	url := func(h *netlab.Host) string { return "http://" + h.IP().String() + ":3142" }
	// Every node lists all three URLs, its own included; mDNS is off.
	static := envStatic + "=" + strings.Join([]string{url(h1), url(h2), url(h3)}, ",")
	nodes := []*node{startNode(t, h1, static), startNode(t, h2, static), startNode(t, h3, static)}
	allFound := func(live []*node) func() bool {
		return func() bool {
			for _, n := range live {
				if !slices.Equal(n.peers(), idsExcept(live, n)) {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, "static peers found", 20*time.Second, allFound(nodes), state(nodes))
	for _, n := range nodes {
		if strings.Contains(n.proc.Log(), "mDNS started") {
			t.Fatalf("%s started mDNS with MDNS off", n.host.Name())
		}
	}
	if err := nodes[2].proc.Kill(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "dead static peer leaves", 30*time.Second, allFound(nodes[:2]), state(nodes[:2]))
	for _, n := range nodes[:2] {
		if !containsLine(n.proc.Log(), "peer left", "peer="+nodes[2].id, "reason=unhealthy") {
			t.Errorf("%s did not mark %s unhealthy:\n%s", n.host.Name(), nodes[2].id, n.proc.Log())
		}
	}
}

// TestRealClients checks the responder against avahi-browse (with an
// avahi-daemon of its own in a lab namespace) and dig (legacy unicast).
func TestRealClients(t *testing.T) {
	for _, bin := range []string{"avahi-daemon", "avahi-browse", "dbus-daemon", "dig", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: apt-get install --no-install-recommends avahi-daemon avahi-utils dbus dnsutils (util-linux for unshare)", bin)
		}
	}
	lab := netlab.New(t, "clients")
	lan := lab.AddLAN("lan", "10.77.12.0/24")
	// c1 runs an avahi-daemon as well, as desktops do: the node must share
	// port 5353 with it. av runs only avahi.
	c1, av := lab.AddHost("c1", lan), lab.AddHost("av", lan)
	busC1 := startAvahi(t, c1)
	nodes := []*node{startNode(t, c1), startNode(t, lab.AddHost("c2", lan))}
	busAv := startAvahi(t, av)

	// Instance "pkgswarm-<first 8 of id>", announced at port 3142.
	for _, client := range []struct {
		host *netlab.Host
		bus  string
	}{{av, busAv}, {c1, busC1}} {
		t.Run("avahi-browse in "+client.host.Name(), func(t *testing.T) {
			for _, service := range []string{discovery.AptProxyServiceType, discovery.ServiceType, discovery.AcngServiceType} {
				var out string
				resolved := func() bool {
					cmd := client.host.Command(context.Background(), "avahi-browse", "-tpr", service)
					cmd.Env = append(cmd.Env, "DBUS_SYSTEM_BUS_ADDRESS="+client.bus)
					b, _ := cmd.CombinedOutput()
					out = string(b)
					for _, n := range nodes {
						if !containsLine(out, "=;eth0;IPv4;pkgswarm-"+n.id[:8]+";"+service+";local;pkgswarm-"+n.id[:8]+".local;"+n.host.IP().String()+";3142;") ||
							!containsLine(out, "=;eth0;IPv4;pkgswarm-"+n.id[:8]+";", `"id=`+n.id+`"`, `"v=1"`) {
							return false
						}
					}
					return true
				}
				took := waitUntil(t, "avahi-browse resolves "+service, 30*time.Second, resolved, func() string { return out })
				t.Logf("avahi-browse resolved both nodes' %s within %v", service, took.Round(time.Millisecond))
			}
		})
	}

	t.Run("nodes find each other beside avahi", func(t *testing.T) {
		waitUntil(t, "nodes find each other", 20*time.Second, func() bool {
			return slices.Equal(nodes[0].peers(), []string{nodes[1].id}) && slices.Equal(nodes[1].peers(), []string{nodes[0].id})
		}, state(nodes))
	})

	t.Run("dig legacy unicast", func(t *testing.T) {
		for _, n := range nodes {
			inst := "pkgswarm-" + n.id[:8]
			out, err := av.Command(context.Background(), "dig", "-p", "5353", "@"+n.host.IP().String(),
				"_apt_proxy._tcp.local", "PTR", "+time=2", "+tries=3", "+noall", "+answer", "+additional", "+nocookie").CombinedOutput()
			if err != nil {
				t.Fatalf("dig PTR at %s: %v\n%s", n.host.IP(), err, out)
			}
			recs := digRecords(string(out))
			t.Logf("dig PTR at %s:\n%s", n.host.IP(), out)
			want := []string{
				"_apt_proxy._tcp.local. 10 IN PTR " + inst + "._apt_proxy._tcp.local.",
				inst + "._apt_proxy._tcp.local. 10 IN SRV 0 0 3142 " + inst + ".local.",
				inst + ".local. 10 IN A " + n.host.IP().String(),
			}
			for _, w := range want {
				if !slices.Contains(recs, w) {
					t.Errorf("dig PTR at %s lacks %q; got:\n%s", n.host.IP(), w, out)
				}
			}
			out, err = av.Command(context.Background(), "dig", "-p", "5353", "@"+n.host.IP().String(),
				inst+".local", "A", "+short", "+time=2", "+tries=3").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != n.host.IP().String() {
				t.Errorf("dig A %s.local at %s = %q, %v; want %s", inst, n.host.IP(), out, err, n.host.IP())
			}
		}
	})
}

// digRecords normalises dig's answer lines to single-space fields.
func digRecords(out string) []string {
	var recs []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		recs = append(recs, strings.Join(strings.Fields(line), " "))
	}
	return recs
}

// startAvahi runs dbus-daemon and avahi-daemon in h, in a mount namespace of
// their own (avahi's pid file and socket paths are fixed, under /run), and
// returns the D-Bus address clients must use.
func startAvahi(t *testing.T, h *netlab.Host) string {
	t.Helper()
	dir := t.TempDir()
	busPath := filepath.Join(dir, "bus")
	files := map[string]string{
		"dbus.conf": `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=` + busPath + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`,
		"avahi.conf": `[server]
host-name=lab` + h.Name() + `
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000
[wide-area]
enable-wide-area=no
[publish]
disable-publishing=yes
publish-aaaa-on-ipv4=no
[reflector]
enable-reflector=no
`,
		"run.sh": `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/avahi-daemon /run/dbus
dbus-daemon --config-file=` + filepath.Join(dir, "dbus.conf") + ` --nofork --nopidfile &
while [ ! -S ` + busPath + ` ]; do sleep 0.05; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=` + busPath + `
exec avahi-daemon --file=` + filepath.Join(dir, "avahi.conf") + ` --no-drop-root --no-chroot --no-rlimits
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := h.Start(context.Background(), "unshare", "-m", "--propagation", "private", "sh", filepath.Join(dir, "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "avahi-daemon starts", 20*time.Second, func() bool {
		return strings.Contains(p.Log(), "Server startup complete") || p.Exited()
	}, p.Log)
	if p.Exited() {
		t.Fatalf("avahi-daemon exited:\n%s", p.Log())
	}
	return "unix:path=" + busPath
}

// TestImportsNoPkgswarmPackage enforces the layering rule: discovery (its
// non-test code) imports no other package of this module.
func TestImportsNoPkgswarmPackage(t *testing.T) {
	pkg, err := build.Default.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/pkgswarm/pkgswarm") {
			t.Errorf("discovery imports %s; it must import no pkgswarm package", imp)
		}
	}
}
