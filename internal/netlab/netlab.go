package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nsPrefix starts the name of every namespace a lab makes.
const nsPrefix = "nl-"

var (
	availOnce sync.Once
	availErr  error
)

// Available reports why labs cannot be built on this machine, or nil when they
// can: it needs root, the `ip` command, and a kernel that lets it add a network
// namespace. The answer is computed once per process.
func Available() error {
	availOnce.Do(func() { availErr = probe() })
	return availErr
}

func probe() error {
	if os.Geteuid() != 0 {
		return errors.New("netlab: network namespaces need root (run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("netlab: the `ip` command (iproute2) is not installed")
	}
	name := fmt.Sprintf("%sprobe-%d", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: cannot add a network namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: cannot delete probe namespace %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Lab is one test's set of namespaces. Its methods fail the test (t.Fatal) when
// the network cannot be built, so they must be called from the test goroutine.
type Lab struct {
	t      testing.TB
	prefix string // "nl-<name>-<pid>-<rand>-"
	logDir string

	mu     sync.Mutex // protects the fields below
	lans   []*LAN
	hosts  []*Host // hosts and routers, in creation order
	procs  []*Proc
	routes map[string]bool // "host|prefix" routes already installed
	names  map[string]bool // node names in use
}

// New makes an empty lab for t. name (letters and digits are kept) starts the
// names of its namespaces; namespaces with the same name left by a test process
// that no longer runs are deleted first. Cleanup removes everything the lab made.
// New calls t.Skip when Available reports an error, or t.Fatal under CI=true,
// where every lab test must run.
func New(t testing.TB, name string) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("netlab: CI=true, and labs cannot be built here: %v", err)
		}
		t.Skipf("netlab: skipping: %v", err)
	}
	name = sanitize(name, 12)
	if name == "" {
		name = "lab"
	}
	removeStale(t, nsPrefix+name+"-")
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("netlab: random suffix: %v", err)
	}
	l := &Lab{
		t:      t,
		prefix: fmt.Sprintf("%s%s-%d-%s-", nsPrefix, name, os.Getpid(), hex.EncodeToString(rnd[:])),
		logDir: t.TempDir(), // before Cleanup is registered, so it is removed after it
		routes: map[string]bool{},
		names:  map[string]bool{},
	}
	t.Cleanup(l.cleanup)
	return l
}

// LAN is one broadcast domain: a bridge (br0) in a namespace of its own.
type LAN struct {
	lab    *Lab
	name   string
	ns     string
	prefix netip.Prefix

	next  int // next host number to hand out in prefix
	ports int // bridge ports made so far
}

// Name returns the LAN's name as given to AddLAN.
func (n *LAN) Name() string { return n.name }

// Namespace returns the name of the namespace that holds the bridge.
func (n *LAN) Namespace() string { return n.ns }

// Prefix returns the LAN's subnet.
func (n *LAN) Prefix() netip.Prefix { return n.prefix }

// Host is a namespace with one interface in each LAN it joined.
type Host struct {
	lab    *Lab
	name   string
	ns     string
	router bool
	lans   []*LAN
	ifaces map[*LAN]string     // interface name inside ns
	ports  map[*LAN]string     // bridge port name inside the LAN's namespace
	addrs  map[*LAN]netip.Addr // address on that LAN
}

// AddLAN makes a LAN with the given IPv4 subnet, e.g. "10.77.1.0/24". Hosts get
// addresses from .1 upwards. Use subnets that are not routed anywhere: they are
// only ever configured inside the lab.
func (l *Lab) AddLAN(name, subnet string) *LAN {
	l.t.Helper()
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		l.t.Fatalf("netlab: LAN %q: subnet %q is not an IPv4 prefix like 10.77.1.0/24", name, subnet)
	}
	p = p.Masked()
	lan := &LAN{lab: l, name: name, ns: l.nsName(name), prefix: p, next: 1}
	l.mustNetns(lan.ns)
	l.mu.Lock()
	l.lans = append(l.lans, lan)
	l.mu.Unlock()
	l.mustIP(lan.ns, "link", "set", "lo", "up")
	l.mustIP(lan.ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.mustIP(lan.ns, "link", "set", "br0", "up")
	return lan
}

// AddHost makes a host with one interface in each of lans (eth0 in the first,
// eth1 in the second, …), each with the LAN's next address.
func (l *Lab) AddHost(name string, lans ...*LAN) *Host {
	l.t.Helper()
	return l.addHost(name, false, lans)
}

// AddRouter makes a host that forwards IPv4 unicast between lans. Hosts on
// those LANs (those made before and after it) get routes to the router's other
// LANs through it. Multicast is not forwarded.
func (l *Lab) AddRouter(name string, lans ...*LAN) *Host {
	l.t.Helper()
	if len(lans) < 2 {
		l.t.Fatalf("netlab: router %q needs at least two LANs, got %d", name, len(lans))
	}
	return l.addHost(name, true, lans)
}

func (l *Lab) addHost(name string, router bool, lans []*LAN) *Host {
	l.t.Helper()
	if len(lans) == 0 {
		l.t.Fatalf("netlab: host %q needs at least one LAN", name)
	}
	h := &Host{
		lab: l, name: name, ns: l.nsName(name), router: router,
		ifaces: map[*LAN]string{}, ports: map[*LAN]string{}, addrs: map[*LAN]netip.Addr{},
	}
	l.mustNetns(h.ns)
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	l.mustIP(h.ns, "link", "set", "lo", "up")
	// mDNS stacks that loop multicast back need lo to be multicast-capable.
	l.mustIP(h.ns, "link", "set", "lo", "multicast", "on")
	for i, lan := range lans {
		if lan.lab != l {
			l.t.Fatalf("netlab: host %q: LAN %q belongs to another lab", name, lan.name)
		}
		if _, dup := h.ifaces[lan]; dup {
			l.t.Fatalf("netlab: host %q joins LAN %q twice", name, lan.name)
		}
		addr, err := lan.allocate()
		if err != nil {
			l.t.Fatalf("netlab: host %q: %v", name, err)
		}
		ifname := "eth" + strconv.Itoa(i)
		lan.ports++
		port := "p" + strconv.Itoa(lan.ports)
		// Both ends are made directly in their namespaces, so the names
		// never meet in the test process's namespace.
		l.mustIP(h.ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", lan.ns)
		l.mustIP(lan.ns, "link", "set", port, "master", "br0")
		l.mustIP(lan.ns, "link", "set", port, "up")
		l.mustIP(h.ns, "addr", "add", netip.PrefixFrom(addr, lan.prefix.Bits()).String(), "dev", ifname)
		l.mustIP(h.ns, "link", "set", ifname, "up")
		h.lans = append(h.lans, lan)
		h.ifaces[lan] = ifname
		h.ports[lan] = port
		h.addrs[lan] = addr
	}
	l.mustIP(h.ns, "route", "add", "224.0.0.0/4", "dev", h.ifaces[lans[0]])
	if router {
		l.mustRun(exec.Command("ip", "netns", "exec", h.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
	}
	l.wireRoutes()
	return h
}

// wireRoutes gives every host a route to each LAN it can reach through
// routers, via the first router on the shortest path (fewest routers):
// sites behind gateways on a shared WAN reach each other.
func (l *Lab) wireRoutes() {
	l.t.Helper()
	l.mu.Lock()
	hosts := append([]*Host(nil), l.hosts...)
	l.mu.Unlock()
	routersOn := func(lan *LAN, not *Host) []*Host {
		var out []*Host
		for _, r := range hosts {
			if _, on := r.ifaces[lan]; on && r.router && r != not {
				out = append(out, r)
			}
		}
		return out
	}
	type hop struct {
		lan *LAN
		via netip.Addr // first router's address on one of h's LANs
	}
	for _, h := range hosts {
		seen := map[*LAN]bool{}
		for _, lan := range h.lans {
			seen[lan] = true
		}
		var queue []hop
		for _, lan := range h.lans {
			for _, r := range routersOn(lan, h) {
				for _, far := range r.lans {
					if !seen[far] {
						seen[far] = true
						queue = append(queue, hop{far, r.addrs[lan]})
					}
				}
			}
		}
		for len(queue) > 0 {
			it := queue[0]
			queue = queue[1:]
			key := h.ns + "|" + it.lan.prefix.String()
			l.mu.Lock()
			done := l.routes[key]
			l.routes[key] = true
			l.mu.Unlock()
			if !done {
				l.mustIP(h.ns, "route", "replace", it.lan.prefix.String(), "via", it.via.String())
			}
			for _, r := range routersOn(it.lan, h) {
				for _, far := range r.lans {
					if !seen[far] {
						seen[far] = true
						queue = append(queue, hop{far, it.via})
					}
				}
			}
		}
	}
}

func (n *LAN) allocate() (netip.Addr, error) {
	a := n.prefix.Addr()
	for i := 0; i < n.next; i++ {
		a = a.Next()
	}
	if !n.prefix.Contains(a) || !n.prefix.Contains(a.Next()) { // keep the broadcast address free
		return netip.Addr{}, fmt.Errorf("LAN %q (%s) has no free address left", n.name, n.prefix)
	}
	n.next++
	return a, nil
}

// Name returns the host's name as given to AddHost.
func (h *Host) Name() string { return h.name }

// Namespace returns the name of the host's network namespace.
func (h *Host) Namespace() string { return h.ns }

// IP returns the host's address on its first LAN.
func (h *Host) IP() net.IP { return net.IP(h.addrs[h.lans[0]].AsSlice()) }

// IPOn returns the host's address on lan, or nil when it is not on lan.
func (h *Host) IPOn(lan *LAN) net.IP {
	a, ok := h.addrs[lan]
	if !ok {
		return nil
	}
	return net.IP(a.AsSlice())
}

// Iface returns the name, inside the host's namespace, of its interface on
// lan, or "" when the host is not on lan.
func (h *Host) Iface(lan *LAN) string { return h.ifaces[lan] }

// Command returns a command that runs name inside the host's namespace (through
// `ip netns exec`), with the test process's environment in cmd.Env, which the
// caller may extend. Only the network namespace changes: the file system,
// users and processes are the test's.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.Env = os.Environ()
	return cmd
}

// Start runs name in the background inside the host's namespace; see StartCmd.
func (h *Host) Start(ctx context.Context, name string, args ...string) (*Proc, error) {
	return h.StartCmd(h.Command(ctx, name, args...))
}

// StartCmd starts cmd (made by Command, possibly with more Env) in the
// background, with its stdout and stderr going to a log file under the test's
// temporary directory (LogPath), in a process group of its own. The lab kills
// the group in Cleanup if it is still running.
func (h *Host) StartCmd(cmd *exec.Cmd) (*Proc, error) {
	l := h.lab
	l.mu.Lock()
	n := len(l.procs)
	l.mu.Unlock()
	base := filepath.Base(cmd.Args[min(len(cmd.Args)-1, 4)]) // ip netns exec NS name …
	logPath := filepath.Join(l.logDir, fmt.Sprintf("%02d-%s-%s.log", n, h.name, sanitize(base, 20)))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("netlab: host %s: log file for %s: %w", h.name, base, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("netlab: host %s: start %s: %w", h.name, strings.Join(cmd.Args, " "), err)
	}
	p := &Proc{host: h, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// AddAddr adds an address with its prefix length ("fd77:1::5/64",
// "fe80::5/64", "10.77.9.5/24") to the host's interface on lan, besides the
// one AddHost gave it. An IPv6 address skips duplicate address detection, so
// it can be bound at once. Nothing routes to it: it is reachable on lan's
// link only, and IP and IPOn keep returning the first address.
func (h *Host) AddAddr(lan *LAN, prefix string) error {
	ifname, ok := h.ifaces[lan]
	if !ok {
		return fmt.Errorf("netlab: host %s is not on LAN %s", h.name, lan.name)
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("netlab: host %s: address %q is not an address with its prefix length, like fd77:1::5/64", h.name, prefix)
	}
	args := []string{"-n", h.ns, "addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: host %s: add %s on %s: %v: %s", h.name, p, ifname, err, bytes.TrimSpace(out))
	}
	return nil
}

// Shape limits the rate of the host's link into lan, in both directions, with
// a tbf qdisc (rate as tc takes it: "50mbit", "512kbit", "1gbit"). netem is not
// used: this kernel does not have it.
func (h *Host) Shape(lan *LAN, rate string) error {
	ifname, ok := h.ifaces[lan]
	if !ok {
		return fmt.Errorf("netlab: host %s is not on LAN %s", h.name, lan.name)
	}
	bps, err := parseRate(rate)
	if err != nil {
		return fmt.Errorf("netlab: shape host %s on LAN %s: %w", h.name, lan.name, err)
	}
	// The bucket must hold at least one timer tick of traffic; 4 ms of it,
	// and never less than a few full frames.
	burst := max(bps/8/250, 16*1024)
	args := []string{"qdisc", "replace", "dev", "", "root", "tbf", "rate", rate,
		"burst", strconv.FormatInt(burst, 10), "latency", "50ms"}
	for _, side := range []struct{ ns, dev string }{{h.ns, ifname}, {lan.ns, h.ports[lan]}} {
		args[3] = side.dev
		cmd := exec.Command("ip", append([]string{"netns", "exec", side.ns, "tc"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("netlab: shape %s in %s to %s: %v: %s", side.dev, side.ns, rate, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// ShaperDrops returns the frames the shaper of the host's link into lan
// (Shape) dropped so far: out on the way from the host into lan, in on the
// way back. A link that is not shaped has none.
func (h *Host) ShaperDrops(lan *LAN) (out, in uint64, err error) {
	ifname, ok := h.ifaces[lan]
	if !ok {
		return 0, 0, fmt.Errorf("netlab: host %s is not on LAN %s", h.name, lan.name)
	}
	for i, side := range []struct{ ns, dev string }{{h.ns, ifname}, {lan.ns, h.ports[lan]}} {
		b, err := exec.Command("ip", "netns", "exec", side.ns, "tc", "-s", "-j", "qdisc", "show", "dev", side.dev).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("netlab: qdisc counters of %s in %s: %w", side.dev, side.ns, err)
		}
		n, err := parseQdiscDrops(b)
		if err != nil {
			return 0, 0, fmt.Errorf("netlab: qdisc counters of %s in %s: %w", side.dev, side.ns, err)
		}
		if i == 0 {
			out = n
		} else {
			in = n
		}
	}
	return out, in, nil
}

// parseQdiscDrops sums the drops of the tbf qdiscs in `tc -s -j qdisc show`
// output (a JSON array of qdiscs).
func parseQdiscDrops(b []byte) (uint64, error) {
	var qs []struct {
		Kind  string `json:"kind"`
		Drops uint64 `json:"drops"`
	}
	if err := json.Unmarshal(b, &qs); err != nil {
		return 0, fmt.Errorf("tc -j output is not a JSON array of qdiscs: %w", err)
	}
	var n uint64
	for _, q := range qs {
		if q.Kind == "tbf" {
			n += q.Drops
		}
	}
	return n, nil
}

// parseRate turns a tc rate ("50mbit", "100kbit", "1gbit", "9600bit") into bits per second.
func parseRate(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   int64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v <= 0 {
				break
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	return 0, fmt.Errorf("rate %q is not a positive number followed by bit, kbit, mbit or gbit", s)
}

// Proc is a background process started in a host.
type Proc struct {
	host    *Host
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath returns the file that holds the process's stdout and stderr.
func (p *Proc) LogPath() string { return p.logPath }

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return string(b)
}

// Signal sends sig to the process (not to its children).
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the process and its process group, and waits for it.
func (p *Proc) Kill() error {
	if !p.Exited() {
		if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("netlab: kill %s in %s: %w", p.cmd.Path, p.host.name, err)
		}
	}
	<-p.done
	return nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end and returns how it ended (as exec.Cmd.Wait).
// It may be called more than once and from several goroutines.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

func (l *Lab) cleanup() {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	hosts := append([]*Host(nil), l.hosts...)
	lans := append([]*LAN(nil), l.lans...)
	l.mu.Unlock()
	for _, p := range procs {
		if !p.Exited() {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			l.t.Logf("netlab: %s in %s did not end after SIGKILL", p.cmd.Path, p.host.name)
		}
	}
	if l.t.Failed() {
		for _, p := range procs {
			l.t.Logf("netlab: last lines of %s (host %s):\n%s", p.logPath, p.host.name, tail(p.Log(), 40))
		}
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.ns)
	}
	for _, n := range lans {
		names = append(names, n.ns)
	}
	for _, ns := range names {
		if err := deleteNetns(ns); err != nil {
			l.t.Errorf("netlab: cleanup: %v", err)
		}
	}
}

// deleteNetns kills what still runs in ns (only the lab's own processes can
// be there) and deletes it; its veths and bridge go with it.
func deleteNetns(ns string) error {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("No such file")) {
		return fmt.Errorf("delete namespace %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// removeStale deletes namespaces named prefix+"<pid>-…" whose pid no longer runs.
func removeStale(t testing.TB, prefix string) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], prefix) {
			continue
		}
		ns := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(ns, prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // its test is still running
		}
		if err := deleteNetns(ns); err != nil {
			t.Logf("netlab: stale namespace: %v", err)
		} else {
			t.Logf("netlab: deleted stale namespace %s", ns)
		}
	}
}

func (l *Lab) nsName(node string) string {
	l.t.Helper()
	n := sanitize(node, 16)
	if n == "" {
		l.t.Fatalf("netlab: name %q has no letters or digits", node)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.names[n] {
		l.t.Fatalf("netlab: name %q used twice in one lab", node)
	}
	l.names[n] = true
	return l.prefix + n
}

func (l *Lab) mustNetns(ns string) {
	l.t.Helper()
	l.mustRun(exec.Command("ip", "netns", "add", ns))
}

func (l *Lab) mustIP(ns string, args ...string) {
	l.t.Helper()
	l.mustRun(exec.Command("ip", append([]string{"-n", ns}, args...)...))
}

func (l *Lab) mustRun(cmd *exec.Cmd) {
	l.t.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: %s: %v: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(out))
	}
}

// sanitize keeps lower-case letters and digits of s, at most n of them.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= n {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
