package office

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pkgswarm/pkgswarm/proxy/status"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// Options describes an office. Zero values mean the defaults given at each
// field.
type Options struct {
	// Name starts the names of the lab's namespaces; "" means "office".
	Name string
	// Nodes is the number of node hosts (0 is allowed: an origin alone).
	Nodes int
	// Packages are built into a fresh signed repository (testrepo.Build).
	// Ignored when Repo is set.
	Packages []testrepo.Package
	// Repo, when set, is served instead of building one from Packages (a
	// benchmark's fixture, built once with testrepo.BuildDir).
	Repo *testrepo.Repo
	// MDNS turns on mDNS discovery on the nodes (--mdns), confined to
	// their LAN interface (--mdns-interface).
	MDNS bool
	// StaticPeers gives every node every other node as a --peer.
	StaticPeers bool
	// ExtraArgs are appended to each node's `pkgswarm serve` arguments.
	ExtraArgs []string
	// NodeArgs, if set, returns more arguments for one node, appended
	// after ExtraArgs (e.g. its own --swarm-listen address).
	NodeArgs func(n *Node) []string
	// Program is what each node runs; the zero Program re-executes the
	// current binary as the pkgswarm CLI (see Child).
	Program Program
	// Port is the port each node's program listens on; 0 means 3142.
	Port int
	// OriginPort is the origin's port in its namespace; 0 means 80.
	OriginPort int
	// Subnet is the LAN's IPv4 subnet; "" means "10.77.0.0/24". The origin
	// gets the first address, the nodes the next ones in order.
	Subnet string
	// NodeRate, when set, shapes each node's LAN link (both directions) to
	// that tc rate, e.g. "100mbit". OriginRate does the same for the
	// origin's link, its uplink.
	NodeRate, OriginRate string
	// OriginDelay, when positive, delays the origin's traffic by that much
	// in each direction (a round trip grows by twice it), in the relay:
	// tc's netem is not available in this kernel.
	OriginDelay time.Duration
	// NoStart makes the network, the origin, the data directories and the
	// apt clients but starts no node: call Node.Start (e.g. after adding
	// hosts of your own to Lab).
	NoStart bool
	// LogLevel is the nodes' --log-level; "" means "info".
	LogLevel string
	// StartTimeout bounds how long New and Node.Start wait for a node to
	// answer on its port; 0 means 30s.
	StartTimeout time.Duration
}

// Program is what a node runs.
type Program struct {
	// Path is the executable to run, e.g. a built pkgswarm or
	// /usr/sbin/apt-cacher-ng. "" means the current executable, which must
	// call Child first thing (TestMain or main): it is re-executed with the
	// arguments passed in its environment.
	Path string
	// Args returns a node's arguments, without the program name. nil means
	// Node.ServeArgs (pkgswarm serve with the office's settings).
	Args func(n *Node) []string
	// Env holds extra environment variables for the program.
	Env []string
	// ReadyPath is fetched on the node's port until it answers with a
	// status below 500; "" means pkgswarm's health endpoint.
	ReadyPath string
}

// Office is a LAN of pkgswarm nodes, each in a network namespace of its own,
// and an origin host on the same LAN. Everything is torn down by the test's
// Cleanup.
type Office struct {
	// Origin serves Repo from its own host on the LAN.
	Origin *Origin
	// Repo is the signed repository the origin serves.
	Repo *testrepo.Repo

	tb    testing.TB
	opts  Options
	lab   *netlab.Lab
	lan   *netlab.LAN
	nodes []*Node
}

// New builds an office for tb: a lab with one LAN, the origin's host and
// Options.Nodes node hosts, a repository, and (unless NoStart) every node's
// program, started and answering on its port. It fails the test on error
// and skips it when labs cannot be built here (not root, no iproute2) or
// apt-get, gpg or dpkg-deb is missing.
func New(tb testing.TB, opts Options) *Office {
	tb.Helper()
	if opts.Nodes < 0 {
		tb.Fatalf("office: %d nodes", opts.Nodes)
	}
	opts.Name = cmp.Or(opts.Name, "office")
	opts.Port = cmp.Or(opts.Port, 3142)
	opts.OriginPort = cmp.Or(opts.OriginPort, 80)
	opts.Subnet = cmp.Or(opts.Subnet, "10.77.0.0/24")
	opts.LogLevel = cmp.Or(opts.LogLevel, "info")
	opts.StartTimeout = cmp.Or(opts.StartTimeout, 30*time.Second)
	if _, err := exec.LookPath("apt-get"); err != nil {
		tb.Skip("office: apt-get not found in PATH (install Debian package apt)")
	}
	o := &Office{tb: tb, opts: opts, Repo: opts.Repo}
	o.lab = netlab.New(tb, opts.Name) // skips when labs are unavailable
	if o.Repo == nil {
		o.Repo = testrepo.Build(tb, testrepo.Options{Packages: opts.Packages})
	}
	o.lan = o.lab.AddLAN("lan", opts.Subnet)
	originHost := o.lab.AddHost("origin", o.lan)
	if opts.OriginRate != "" {
		if err := originHost.Shape(o.lan, opts.OriginRate); err != nil {
			tb.Fatalf("office: %v", err)
		}
	}
	origin, err := startOrigin(originHost, o.Repo.Dir, opts.OriginPort, opts.OriginDelay)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	o.Origin = origin
	origin.LAN = o.lan
	tb.Cleanup(origin.close) // runs before the lab's cleanup
	for i := range opts.Nodes {
		o.nodes = append(o.nodes, o.newNode(i, "node"+strconv.Itoa(i), o.lan))
	}
	if !opts.NoStart {
		o.startAll(tb, opts.StartTimeout)
	}
	return o
}

// startAll launches every node, then waits until each one answers.
func (o *Office) startAll(tb testing.TB, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, n := range o.nodes {
		if err := n.launch(); err != nil {
			tb.Fatalf("%v", err)
		}
	}
	for _, n := range o.nodes {
		if err := n.waitReady(ctx); err != nil {
			tb.Fatalf("%v", err)
		}
	}
}

// newNode makes node i, named name, as a host on lan.
func (o *Office) newNode(i int, name string, lan *netlab.LAN) *Node {
	tb := o.tb
	tb.Helper()
	h := o.lab.AddHost(name, lan)
	if o.opts.NodeRate != "" {
		if err := h.Shape(lan, o.opts.NodeRate); err != nil {
			tb.Fatalf("office: %v", err)
		}
	}
	dir := tb.TempDir()
	n := &Node{Index: i, Name: name, Host: h, Port: o.opts.Port, DataDir: filepath.Join(dir, "data"), office: o, lan: lan}
	// An empty config file, so a host's /etc/pkgswarm/pkgswarm.toml never
	// leaks into a node.
	n.configFile = filepath.Join(dir, "pkgswarm.toml")
	if err := os.WriteFile(n.configFile, nil, 0o644); err != nil {
		tb.Fatalf("office: %v", err)
	}
	n.client = HTTPClient(h)
	apt, err := NewApt(h, filepath.Join(dir, "apt"), aptenv.Options{
		Proxy:   "http://127.0.0.1:" + strconv.Itoa(n.Port),
		Sources: []aptenv.Source{o.AptSource()},
	})
	if err != nil {
		tb.Fatalf("%v", err)
	}
	n.apt = apt
	return n
}

// AptSource is the sources.list entry of the office's repository at the
// origin's lab URL.
func (o *Office) AptSource() aptenv.Source {
	return aptenv.Source{URL: o.Origin.URL, Suite: o.Repo.Suite, Components: []string{o.Repo.Component},
		Keyring: o.Repo.Key.KeyringPath}
}

// Lab returns the office's lab, to add hosts of one's own.
func (o *Office) Lab() *netlab.Lab { return o.lab }

// LAN returns the office's LAN.
func (o *Office) LAN() *netlab.LAN { return o.lan }

// Nodes returns every node, in order.
func (o *Office) Nodes() []*Node { return slices.Clone(o.nodes) }

// Node returns node i (0-based; named "node<i>").
func (o *Office) Node(i int) *Node {
	if i < 0 || i >= len(o.nodes) {
		o.tb.Fatalf("office: no node %d (the office has %d)", i, len(o.nodes))
	}
	return o.nodes[i]
}

// Node is one machine of the office.
type Node struct {
	Index   int
	Name    string       // "node<Index>" (in Sites: "a<i>", "b<i>"; in a Fleet: "s<site>n<i>")
	Site    int          // the node's site in a Fleet (0 elsewhere)
	Host    *netlab.Host // its namespace
	Port    int          // the program's port
	DataDir string       // its --data-dir; kept across Restart

	office     *Office
	lan        *netlab.LAN // the LAN its host is on
	configFile string
	client     *http.Client
	apt        *Apt

	mu    sync.Mutex     // protects proc and lives
	proc  *netlab.Proc   // the running (or last) process
	lives []*netlab.Proc // every process started, oldest first (proc is the last)
}

// IP returns the node's LAN address.
func (n *Node) IP() net.IP { return n.Host.IP() }

// URL returns the node's base URL on the LAN, "http://ip:port", as peers
// reach it.
func (n *Node) URL() string {
	return "http://" + net.JoinHostPort(n.IP().String(), strconv.Itoa(n.Port))
}

// Apt returns the node's apt client: it runs in the node's namespace, uses
// the node as its proxy (http://127.0.0.1:<Port>) and the office's
// repository as its only source. One client per node, made by New.
func (n *Node) Apt() *Apt { return n.apt }

// HTTPClient returns a client whose connections are made inside the node's
// namespace: http://127.0.0.1:<Port>/ reaches the node, and the LAN
// addresses of the others reach them.
func (n *Node) HTTPClient() *http.Client { return n.client }

// ServeArgs returns the arguments of `pkgswarm serve` for the node (without
// the program name): its data dir, an empty config file, the repository's
// key as the only trusted key, the origin's port allowed, mDNS on or off and
// confined to the LAN interface, the other nodes as static peers when asked,
// Options.LogLevel, then Options.ExtraArgs.
func (n *Node) ServeArgs() []string {
	o := n.office
	args := []string{"serve",
		"--config", n.configFile,
		"--listen", ":" + strconv.Itoa(n.Port),
		"--data-dir", n.DataDir,
		"--keyring", o.Repo.Key.KeyringPath,
		"--system-keyrings=false",
		"--allow-ports", strconv.Itoa(o.opts.OriginPort),
		"--mdns=" + strconv.FormatBool(o.opts.MDNS),
		"--mdns-interface", n.Host.Iface(n.lan),
		"--log-level", o.opts.LogLevel,
	}
	if !o.opts.MDNS {
		// Announcing _apt_proxy._tcp is done by mDNS; serve refuses it
		// without.
		args = append(args, "--announce-apt-proxy=false")
	}
	if o.opts.StaticPeers {
		for _, p := range o.nodes {
			if p != n {
				args = append(args, "--peer", p.URL())
			}
		}
	}
	args = append(args, o.opts.ExtraArgs...)
	if o.opts.NodeArgs != nil {
		args = append(args, o.opts.NodeArgs(n)...)
	}
	return args
}

// Proc returns the node's running (or last) process, nil before the first
// start.
func (n *Node) Proc() *netlab.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	p := n.Proc()
	return p != nil && !p.Exited()
}

// Start starts the node's program and waits until it answers on its port.
// Starting a running node is an error.
func (n *Node) Start(ctx context.Context) error {
	if err := n.launch(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, n.office.opts.StartTimeout)
	defer cancel()
	return n.waitReady(ctx)
}

func (n *Node) launch() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.Exited() {
		return fmt.Errorf("office: %s is already running (pid %d)", n.Name, n.proc.Pid())
	}
	prog := n.office.opts.Program
	args := n.ServeArgs()
	if prog.Args != nil {
		args = prog.Args(n)
	}
	path := prog.Path
	env := cleanEnv(os.Environ())
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("office: %s: find the current executable to re-execute: %w", n.Name, err)
		}
		path = exe
		env = append(env, childEnv+"="+encodeArgs(args))
		args = nil
	}
	cmd := n.Host.Command(context.Background(), path, args...)
	cmd.Env = append(env, prog.Env...)
	p, err := n.Host.StartCmd(cmd)
	if err != nil {
		return fmt.Errorf("office: start %s: %w", n.Name, err)
	}
	n.proc = p
	n.lives = append(n.lives, p)
	return nil
}

// cleanEnv drops what would change a node behind the harness's back:
// proxy variables, pkgswarm's flag variables and a stale child marker.
func cleanEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy":
			return true
		}
		return strings.HasPrefix(name, "PKGSWARM_")
	})
}

// waitReady polls the node's ready path until it answers below 500, the
// process exits, or ctx ends.
func (n *Node) waitReady(ctx context.Context) error {
	path := cmp.Or(n.office.opts.Program.ReadyPath, discovery.HealthPath)
	p := n.Proc()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		code, err := n.getStatus(rctx, path)
		cancel()
		if err == nil && code < 500 {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("GET %s: status %d", path, code)
		}
		select {
		case <-p.Done():
			return fmt.Errorf("office: %s exited before answering on port %d (%v); its log:\n%s",
				n.Name, n.Port, p.Wait(), tail(p.Log(), 30))
		case <-ctx.Done():
			return fmt.Errorf("office: %s did not answer on port %d: %v; its log:\n%s",
				n.Name, n.Port, last, tail(p.Log(), 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) getStatus(ctx context.Context, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.localURL(path), nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (n *Node) localURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(n.Port) + path
}

// Get fetches path (e.g. "/_pkgswarm/status") from the node, inside its
// namespace, and returns the body of a 200 response.
func (n *Node) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.localURL(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("office: %s: GET %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("office: %s: GET %s: reading the body: %w", n.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("office: %s: GET %s: %s: %s", n.Name, path, resp.Status, clip(string(body)))
	}
	return body, nil
}

// Status is a node's /_pkgswarm/status document (docs/status-json.md).
type Status struct {
	status.Status
}

// PeerIDs returns the node ids in the peer table, sorted.
func (s Status) PeerIDs() []string {
	ids := make([]string, 0, len(s.Peers))
	for _, p := range s.Peers {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

// Status fetches and decodes the node's status.
func (n *Node) Status(ctx context.Context) (Status, error) {
	body, err := n.Get(ctx, "/_pkgswarm/status")
	if err != nil {
		return Status{}, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("office: %s: decode /_pkgswarm/status: %w", n.Name, err)
	}
	return st, nil
}

// Kill sends SIGKILL to the node's program (and its process group) and
// waits for it to end: a machine losing power. Killing a stopped node does
// nothing.
func (n *Node) Kill() error {
	p := n.Proc()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Stop asks the node's program to end (SIGTERM), as a shutdown would, and
// waits up to timeout before killing it.
func (n *Node) Stop(timeout time.Duration) error {
	p := n.Proc()
	if p == nil || p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("office: stop %s: %w", n.Name, err)
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(timeout):
		return p.Kill()
	}
}

// Restart kills the node if it runs and starts it again with the same data
// directory (so the same node id and cache), waiting until it answers.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Kill(); err != nil {
		return err
	}
	return n.Start(ctx)
}

// Shape limits the node's LAN link, both directions, to rate ("8mbit").
func (n *Node) Shape(rate string) error { return n.Host.Shape(n.lan, rate) }

// LAN returns the LAN the node's host is on.
func (n *Node) LAN() *netlab.LAN { return n.lan }

// Log returns what the node's program has written so far in its latest
// life (each start writes its own file; Logs returns them all).
func (n *Node) Log() string {
	p := n.Proc()
	if p == nil {
		return ""
	}
	return p.Log()
}

// Logs returns the log of every life of the node's program, oldest first:
// one entry per Start (Restart included), the latest last. A node killed and
// started again has two; none before the first start.
func (n *Node) Logs() []string {
	n.mu.Lock()
	lives := slices.Clone(n.lives)
	n.mu.Unlock()
	logs := make([]string, len(lives))
	for i, p := range lives {
		logs[i] = p.Log()
	}
	return logs
}

// HTTPClient returns an HTTP client whose connections are made inside
// host's network namespace (proxy variables are ignored).
func HTTPClient(host *netlab.Host) *http.Client {
	ns := host.Namespace()
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
