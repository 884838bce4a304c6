package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/origin"
)

// Kind names a target.
type Kind string

// The targets.
const (
	Direct      Kind = "direct"        // apt straight to the origin
	Pkgswarm    Kind = "pkgswarm"      // forward proxy
	AptCacherNG Kind = "apt-cacher-ng" // forward proxy
	Approx      Kind = "approx"        // URL prefix /bench
	Nginx       Kind = "nginx"         // the fixture from disk (no proxy)
	// NginxProxy is nginx as a plain reverse proxy in front of the origin:
	// no cache, nothing kept, nothing hashed (proxy_buffering off). What a
	// hop between apt and the origin costs by itself.
	NginxProxy Kind = "nginx-proxy"
)

// Apt reports whether apt runs through the kind in the apt scenarios: every
// kind but nginx, which serves the fixture to the hot and small steps only.
func (k Kind) Apt() bool { return k != Nginx }

// Holds reports whether the kind answers from files it holds (the origin's
// own, or a cache's): only then do the hot and small steps, the herd, the
// tamper check and an origin outage measure it rather than the origin.
// nginx-proxy holds nothing.
func (k Kind) Holds() bool { return k != NginxProxy }

// Target is a running server under test.
type Target struct {
	Kind Kind
	// Proxy is the forward-proxy URL apt and the load client use; "" when
	// the target is asked directly (Direct, Approx, Nginx, NginxProxy).
	Proxy string
	// Base is the repository root as a client names it: the origin URL for
	// forward proxies and Direct, the prefix URL for Approx, nginx's root
	// (Nginx and NginxProxy).
	Base string
	// PID is the root of the target's process tree (0 for Direct, which
	// runs inside the benchmark).
	PID int
	// CacheDir is where the target keeps cached files ("" for Direct,
	// Nginx and NginxProxy).
	CacheDir string
	// Version is the server's version string.
	Version string

	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error         // set before done is closed
	logPath string
}

// Options says what to start.
type Options struct {
	Kind Kind
	// WorkDir is a fresh directory for the target's configuration, cache
	// and logs.
	WorkDir string
	// Origin is the URL ("http://127.0.0.1:PORT", no trailing slash) the
	// proxies fetch from and the Direct target is: the benchmark origin,
	// or a relay in front of it.
	Origin string
	// FixtureDir is the repository nginx serves.
	FixtureDir string
	// Keyring verifies the fixture (pkgswarm's --keyring).
	Keyring string
	// PkgswarmBin is the pkgswarm binary.
	PkgswarmBin string
	// PkgswarmArgs are appended to pkgswarm serve's arguments.
	PkgswarmArgs []string
}

// URL returns the URL a client asks for the repository path p ("/pool/…").
func (t *Target) URL(p string) string { return t.Base + p }

// Client returns an HTTP client that reaches the target (through Proxy
// when set), keeping up to conns connections alive.
func (t *Target) Client(conns int) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	if t.Proxy != "" {
		u, _ := url.Parse(t.Proxy)
		tr.Proxy = http.ProxyURL(u)
	}
	return &http.Client{Transport: tr}
}

// Start starts a target and waits until it answers on its port.
func Start(ctx context.Context, o Options) (*Target, error) {
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Kind, err)
	}
	switch o.Kind {
	case Direct, Pkgswarm, AptCacherNG, Approx, NginxProxy:
		if _, err := originPort(o.Origin); err != nil {
			return nil, fmt.Errorf("start %s: %w", o.Kind, err)
		}
	}
	switch o.Kind {
	case Direct:
		return &Target{Kind: Direct, Base: o.Origin, Version: "Go net/http file server (bench/origin)"}, nil
	case Pkgswarm:
		return startPkgswarm(ctx, o)
	case AptCacherNG:
		return startAptCacherNG(ctx, o)
	case Approx:
		return startApprox(ctx, o)
	case Nginx:
		return startNginx(ctx, o)
	case NginxProxy:
		return startNginxProxy(ctx, o)
	}
	return nil, fmt.Errorf("start target: unknown kind %q (want direct, pkgswarm, apt-cacher-ng, approx, nginx or nginx-proxy)", o.Kind)
}

// originPort is the port of an origin URL, which must name one.
func originPort(origin string) (string, error) {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.Port() == "" || u.Path != "" {
		return "", fmt.Errorf("origin %q is not http://HOST:PORT", origin)
	}
	return u.Port(), nil
}

// Stop ends the target's process group: SIGTERM, then SIGKILL after five
// seconds. It returns once the process is reaped. Stopping twice is
// harmless.
func (t *Target) Stop() error {
	if t == nil || t.cmd == nil {
		return nil
	}
	pgid := t.cmd.Process.Pid // Setpgid: the group id is the leader's pid
	select {
	case <-t.done:
	default:
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-t.done:
		case <-time.After(5 * time.Second):
		}
	}
	// Kill what is left of the group too: workers or per-connection
	// processes that outlived the leader.
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-t.done
	return nil
}

// Log returns the last lines of the target's stdout and stderr, for error
// messages.
func (t *Target) Log() string {
	b, err := os.ReadFile(t.logPath)
	if err != nil {
		return ""
	}
	return lastLines(string(b), 20)
}

// launch starts argv in its own process group with output to workDir/log.
func launch(kind Kind, workDir string, env []string, argv ...string) (*Target, error) {
	logPath := filepath.Join(workDir, string(kind)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = workDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", kind, argv[0], err)
	}
	t := &Target{Kind: kind, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		t.waitErr = cmd.Wait()
		close(t.done)
	}()
	return t, nil
}

// waitReady polls url until it answers any HTTP status, the process
// exits, or 15 seconds pass.
func (t *Target) waitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-t.done:
			return fmt.Errorf("%s exited before it listened on %s (%v):\n%s", t.Kind, addr, t.waitErr, t.Log())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after 15 s:\n%s", t.Kind, addr, t.Log())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWithPort runs start with a fresh port below 32768 and retries (up
// to three times) when the server could not bind it.
func startWithPort(ctx context.Context, kind Kind, start func(port int) (*Target, error)) (*Target, int, error) {
	var last error
	for range 3 {
		port, err := origin.FreePort()
		if err != nil {
			return nil, 0, fmt.Errorf("start %s: %w", kind, err)
		}
		t, err := start(port)
		if err != nil {
			return nil, 0, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if last = t.waitReady(ctx, addr); last == nil {
			return t, port, nil
		}
		t.Stop()
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
	}
	return nil, 0, last
}

func startPkgswarm(ctx context.Context, o Options) (*Target, error) {
	if o.PkgswarmBin == "" {
		return nil, errors.New("start pkgswarm: Options.PkgswarmBin is empty")
	}
	data := filepath.Join(o.WorkDir, "data")
	t, port, err := startWithPort(ctx, Pkgswarm, func(port int) (*Target, error) {
		args := []string{o.PkgswarmBin, "serve",
			"--listen", "127.0.0.1:" + strconv.Itoa(port),
			"--data-dir", data,
			"--keyring", o.Keyring,
			"--system-keyrings=false",
			"--allow-ports", originPortOf(o.Origin),
			"--mdns=false",
			"--announce-apt-proxy=false",
			"--log-level", "warn"}
		if hasFlag(o.PkgswarmBin, "--swarm") {
			// A lone node has no peers; the swarm tier would also listen
			// on every interface. The office benchmark measures the tiers.
			args = append(args, "--swarm", "off")
		}
		if hasFlag(o.PkgswarmBin, "--allow-origin-loopback") {
			// The benchmark's origin is on loopback, which pkgswarm
			// refuses as an origin by default.
			args = append(args, "--allow-origin-loopback")
		}
		return launch(Pkgswarm, o.WorkDir, nil, append(args, o.PkgswarmArgs...)...)
	})
	if err != nil {
		return nil, err
	}
	t.Proxy = "http://127.0.0.1:" + strconv.Itoa(port)
	t.Base = o.Origin
	t.CacheDir = data
	t.Version = commandVersion(o.PkgswarmBin, "--version")
	return t, nil
}

func startAptCacherNG(ctx context.Context, o Options) (*Target, error) {
	conf := filepath.Join(o.WorkDir, "conf")
	cache := filepath.Join(o.WorkDir, "cache")
	logs := filepath.Join(o.WorkDir, "logs")
	for _, d := range []string{conf, cache, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start apt-cacher-ng: %w", err)
		}
	}
	// apt-cacher-ng refuses a configuration directory without a *.conf.
	if err := os.WriteFile(filepath.Join(conf, "acng.conf"), []byte("# settings are on the command line\n"), 0o644); err != nil {
		return nil, fmt.Errorf("start apt-cacher-ng: %w", err)
	}
	t, port, err := startWithPort(ctx, AptCacherNG, func(port int) (*Target, error) {
		return launch(AptCacherNG, o.WorkDir, nil, "apt-cacher-ng",
			"-c", conf,
			"ForeGround=1",
			"Port="+strconv.Itoa(port),
			"BindAddress=127.0.0.1",
			"CacheDir="+cache,
			"LogDir="+logs,
			"SupportDir=/usr/lib/apt-cacher-ng",
			"SocketPath="+filepath.Join(o.WorkDir, "acng.socket"),
			"PidFile="+filepath.Join(o.WorkDir, "acng.pid"),
			"AllowUserPorts="+originPortOf(o.Origin),
			"ExThreshold=4")
	})
	if err != nil {
		return nil, err
	}
	t.Proxy = "http://127.0.0.1:" + strconv.Itoa(port)
	t.Base = o.Origin
	t.CacheDir = cache
	t.Version = debianVersion("apt-cacher-ng")
	return t, nil
}

// approxScript runs inside `unshare --mount --pid`: it gives the namespace
// a /dev of its own (the host's device nodes bound in, plus a /dev/log
// socket whose messages go to a file) and then lets socat accept
// connections, exec'ing one approx per connection with the socket as its
// stdin and stdout, as inetd does.
const approxScript = `set -e
W="$1"; PORT="$2"
mkdir -p "$W/hostdev"
mount --bind /dev "$W/hostdev"
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero full random urandom; do : > "/dev/$n"; mount --bind "$W/hostdev/$n" "/dev/$n"; done
ln -s /proc/self/fd /dev/fd
socat -u UNIX-RECV:/dev/log,mode=666 OPEN:"$W/syslog.txt",creat,append &
i=0; while [ ! -S /dev/log ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
exec socat TCP-LISTEN:"$PORT",bind=127.0.0.1,reuseaddr,fork,backlog=256 EXEC:"/usr/sbin/approx -c $W/approx.conf",nofork
`

func startApprox(ctx context.Context, o Options) (*Target, error) {
	cache := filepath.Join(o.WorkDir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("start approx: %w", err)
	}
	// $user root: approx refuses to run as any user but $user, and the
	// benchmark runs as root.
	conf := fmt.Sprintf("bench %s\n$cache %s\n$user root\n$group root\n$verbose false\n", o.Origin, cache)
	if err := os.WriteFile(filepath.Join(o.WorkDir, "approx.conf"), []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("start approx: %w", err)
	}
	script := filepath.Join(o.WorkDir, "run-approx.sh")
	if err := os.WriteFile(script, []byte(approxScript), 0o755); err != nil {
		return nil, fmt.Errorf("start approx: %w", err)
	}
	t, port, err := startWithPort(ctx, Approx, func(port int) (*Target, error) {
		return launch(Approx, o.WorkDir, nil, "unshare", "--mount", "--propagation", "private",
			"--pid", "--fork", "--kill-child", "--mount-proc",
			"sh", script, o.WorkDir, strconv.Itoa(port))
	})
	if err != nil {
		return nil, err
	}
	t.Base = "http://127.0.0.1:" + strconv.Itoa(port) + "/bench"
	t.CacheDir = cache
	t.Version = debianVersion("approx")
	return t, nil
}

// nginxConf is the configuration both nginx targets share: %[1]s is the
// work directory, %[2]s the blocks that say what it serves.
const nginxConf = `worker_processes 2;
user root root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 65;
	default_type application/octet-stream;
	client_body_temp_path %[1]s/tmp-body;
	proxy_temp_path %[1]s/tmp-proxy;
	fastcgi_temp_path %[1]s/tmp-fastcgi;
	uwsgi_temp_path %[1]s/tmp-uwsgi;
	scgi_temp_path %[1]s/tmp-scgi;
%[2]s}
`

// fileServer serves the fixture (%[2]s) from disk.
const fileServer = `	server {
		listen 127.0.0.1:%[1]d;
		root %[2]s;
	}
`

// proxyServer passes every request to the origin (%[2]s, host:port) over
// kept-alive connections and each answer's bytes to the client as they
// arrive: no buffering to disk, no cache.
const proxyServer = `	upstream origin {
		server %[2]s;
		keepalive 16;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:%[1]d;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host %[2]s;
			proxy_buffering off;
			proxy_request_buffering off;
		}
	}
`

func startNginx(ctx context.Context, o Options) (*Target, error) {
	return startNginxWith(ctx, Nginx, o, func(port int) string {
		return fmt.Sprintf(fileServer, port, o.FixtureDir)
	})
}

func startNginxProxy(ctx context.Context, o Options) (*Target, error) {
	u, err := url.Parse(o.Origin)
	if err != nil {
		return nil, fmt.Errorf("start nginx-proxy: origin %q: %w", o.Origin, err)
	}
	return startNginxWith(ctx, NginxProxy, o, func(port int) string { return fmt.Sprintf(proxyServer, port, u.Host) })
}

// startNginxWith starts nginx as kind with the server block server(port)
// returns.
func startNginxWith(ctx context.Context, kind Kind, o Options, server func(port int) string) (*Target, error) {
	t, port, err := startWithPort(ctx, kind, func(port int) (*Target, error) {
		conf := filepath.Join(o.WorkDir, "nginx.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, o.WorkDir, server(port)), 0o644); err != nil {
			return nil, fmt.Errorf("start %s: %w", kind, err)
		}
		return launch(kind, o.WorkDir, nil, "nginx", "-p", o.WorkDir, "-c", conf, "-g", "daemon off; master_process on;")
	})
	if err != nil {
		return nil, err
	}
	t.Base = "http://127.0.0.1:" + strconv.Itoa(port)
	t.Version = debianVersion("nginx-light")
	if t.Version == "" {
		t.Version = debianVersion("nginx")
	}
	return t, nil
}

// originPortOf is originPort for a URL Start has checked.
func originPortOf(origin string) string {
	p, _ := originPort(origin)
	return p
}

// Missing lists the programs a set of targets needs that are not installed,
// with the Debian package providing each.
func Missing(kinds []Kind) []string {
	need := map[string]string{}
	for _, k := range kinds {
		switch k {
		case AptCacherNG:
			need["apt-cacher-ng"] = "apt-cacher-ng"
		case Approx:
			need["/usr/sbin/approx"] = "approx"
			need["socat"] = "socat"
			need["unshare"] = "util-linux"
		case Nginx, NginxProxy:
			need["nginx"] = "nginx-light"
		}
	}
	var out []string
	for prog, pkg := range need {
		if _, err := exec.LookPath(prog); err != nil {
			out = append(out, fmt.Sprintf("%s (Debian package %s)", prog, pkg))
		}
	}
	return out
}

// hasFlag reports whether `bin serve --help` lists flag.
func hasFlag(bin, flag string) bool {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == flag {
			return true
		}
	}
	return false
}

// debianVersion is the installed version of a Debian package, or "".
func debianVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return pkg + " " + strings.TrimSpace(string(out))
}

func commandVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return filepath.Base(bin)
	}
	return strings.TrimSpace(string(bytes.SplitN(out, []byte("\n"), 2)[0]))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
