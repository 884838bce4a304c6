package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"golang.org/x/sync/errgroup"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/internal/node"
	"github.com/pkgswarm/pkgswarm/proxy"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/origin"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/swarmtier"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// defaultConfigFile is read when it exists and --config is not given.
const defaultConfigFile = "/etc/pkgswarm/pkgswarm.toml"

// env names the environment variable of a flag: PKGSWARM_<NAME>.
func env(name string) []string {
	return []string{"PKGSWARM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

func serveFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: env("config"), Usage: "TOML config file; keys are the flag names (default " + defaultConfigFile + " when it exists)"},
		altsrc.NewStringFlag(&cli.StringFlag{Name: "listen", EnvVars: env("listen"), Value: ":3142", Usage: "address for the proxy, peer protocol and dashboard"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", EnvVars: env("data-dir"), Usage: "cache and index directory (default /var/cache/pkgswarm when writable, else the user cache dir); started as root on a directory of another user, serve runs as that user"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "keyring", EnvVars: env("keyring"), Usage: "OpenPGP keyring file or directory whose keys make an apt repository trusted (repeatable)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "system-keyrings", EnvVars: env("system-keyrings"), Value: true, Usage: "also trust what the host's apt trusts (" + strings.Join(apt.DefaultKeyringPaths, ", ") + ")"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "cache-size", EnvVars: env("cache-size"), Value: "10G", Usage: "bound on cached bytes, LRU eviction (0 = unbounded)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "allow-clients", EnvVars: env("allow-clients"), Usage: "client networks served, CIDR,... (default loopback and private ranges)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "allow-ports", EnvVars: env("allow-ports"), Value: "80,443", Usage: "origin ports pkgswarm fetches from"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "connect-allow", EnvVars: env("connect-allow"), Usage: "host:port targets a CONNECT tunnel may reach (passed through, never cached; repeatable)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "mirror", EnvVars: env("mirror"), Usage: "fallback mirrors: PREFIX=ALT[,ALT...] (repeatable); the first PREFIX keys the cache"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "offline", EnvVars: env("offline"), Usage: "never contact origins; serve from the cache and peers only"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", EnvVars: env("log-level"), Value: "info", Usage: "debug (one line per request), info, warn or error"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-internals", EnvVars: env("log-internals"), Value: "info", Usage: "level of the swarm's BitTorrent and DHT library, the badger index and mDNS discovery, which chatter every few seconds: debug to see them too (never below --log-level)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-format", EnvVars: env("log-format"), Value: "auto", Usage: "text, json, or auto (json under systemd, text otherwise)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "revalidate", EnvVars: env("revalidate"), Value: 27 * time.Second, Usage: "at most one conditional GET per root or volatile file in this window"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "hold", EnvVars: env("hold"), Value: time.Second, Usage: "wait this long for a download to verify before streaming it unverified (aborted if it then fails)"}),
	}
}

func serveCommand() *cli.Command {
	flags := append(append(append(append(serveFlags(), egressFlags()...), lanFlags()...), swarmFlags()...), rpmFlags()...)
	return &cli.Command{
		Name:  "serve",
		Usage: "run the caching proxy",
		Description: "Answers apt, urpmi and dnf on --listen from its cache in --data-dir, LAN peers, the swarm\n" +
			"and the origins. It writes only in --data-dir: blobs/, index/, tmp/, swarm/ and a lock file.\n" +
			"Started as root on a data directory that belongs to another user, it runs as that user\n" +
			"(after it has begun to listen), so that the files it creates there stay that user's.",
		Flags:  flags,
		Before: loadConfigFile(flags),
		Action: runServe,
	}
}

// newLogger returns the node's logger (--log-level) and the logger of its
// internals (--log-internals): the BitTorrent and DHT library behind the
// swarm, the badger index behind the store, and mDNS discovery's chatter.
// Those say something every few seconds on an idle node (DHT traversals and
// announces, peer health checks, index flushes), so --log-level debug alone
// gives one line per request and leaves them out; their warnings and
// information lines still show.
func newLogger(c *cli.Context) (log, internals *slog.Logger, err error) {
	var level, inner slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	if err := inner.UnmarshalText([]byte(c.String("log-internals"))); err != nil {
		return nil, nil, fmt.Errorf("--log-internals %q: want debug, info, warn or error", c.String("log-internals"))
	}
	format := c.String("log-format")
	if format == "auto" {
		format = "text"
		if os.Getenv("JOURNAL_STREAM") != "" || os.Getenv("INVOCATION_ID") != "" {
			format = "json"
		}
	}
	handler := func(l slog.Level) slog.Handler {
		opts := &slog.HandlerOptions{Level: l}
		if format == "json" {
			return slog.NewJSONHandler(os.Stderr, opts)
		}
		return slog.NewTextHandler(os.Stderr, opts)
	}
	if format != "text" && format != "json" {
		return nil, nil, fmt.Errorf("--log-format %q: want text, json or auto", format)
	}
	// Internals never log below the node's own level.
	return slog.New(handler(level)), slog.New(handler(max(level, inner))), nil
}

// defaultDataDir is /var/cache/pkgswarm when writable, else the user's
// cache directory.
func defaultDataDir() string {
	const system = "/var/cache/pkgswarm"
	if err := os.MkdirAll(system, 0o755); err == nil {
		if f, err := os.CreateTemp(system, ".probe-*"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return system
		}
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pkgswarm")
	}
	return filepath.Join(os.TempDir(), "pkgswarm")
}

// listen opens --listen, with a hint only where one is the likely cause:
// the address taken (another proxy, or another pkgswarm), a port that
// needs root; a malformed address says what to write.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("--listen %s: the address is already in use (another proxy, or another pkgswarm, listening there?): stop it, or give this node another --listen", addr)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("--listen %s: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE): choose a port from 1024 up, e.g. :3142", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("--listen %s: no interface of this machine has that address: give one of its addresses, or :PORT for all", addr)
	}
	if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
		return nil, fmt.Errorf("--listen %q: %v: want HOST:PORT or :PORT, e.g. :3142 or 127.0.0.1:3142", addr, ae)
	}
	return nil, fmt.Errorf("--listen %s: %w", addr, err)
}

func parsePorts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("--allow-ports: %q is not a port number", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// nodeID returns this node's persistent random identity.
func nodeID(st *store.Store) (string, error) {
	if v, err := st.GetMeta("node-id"); err == nil && len(v) > 0 {
		return string(v), nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	return id, st.PutMeta("node-id", []byte(id))
}

// server is everything serve runs; other commands reuse parts.
type server struct {
	id        string
	log       *slog.Logger
	internals *slog.Logger // see newLogger
	store     *store.Store
	node      *node.Node
	http      *http.Server
	conns     *connGate // http's ConnState; stopHTTP closes through it the connections that sent no request
	ln        net.Listener
	peers     *peerSet
	swarm     *swarm.Node // nil with --swarm off
	seed      *seeder     // nil with --swarm off
}

func runServe(c *cli.Context) error {
	log, internals, err := newLogger(c)
	if err != nil {
		return cli.Exit(err, 2)
	}
	slog.SetDefault(log)
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit keeps GC pacing from letting the heap double during
		// an index parse; the cache itself lives in files, not memory.
		debug.SetMemoryLimit(64 << 20)
	}
	n, err := buildServer(c, log, internals)
	if err != nil {
		return cli.Exit(err, 1)
	}
	ctx := c.Context
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		attrs := []any{"listen", n.ln.Addr().String(), "data-dir", c.String("data-dir"), "version", version}
		if c.Bool("offline") {
			// Said once here: misses then say "offline" to the client, and
			// nothing is logged per root served from the cache.
			attrs = append(attrs, "offline", "origins are never contacted (--offline): only the cache and peers answer")
		}
		log.Info("pkgswarm serving", attrs...)
		if err := n.http.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving on %s: %w", n.ln.Addr(), err)
		}
		return nil
	})
	dcfg := discovery.Config{
		NodeID: n.id, Port: n.ln.Addr().(*net.TCPAddr).Port,
		Interfaces: c.StringSlice("mdns-interface"), MDNS: c.Bool("mdns"),
		AnnounceAptProxy: c.Bool("mdns") && c.Bool("announce-apt-proxy"), Static: c.StringSlice("peer"), Logger: n.internals,
	}
	var onPeer func(discovery.Peer, bool)
	if n.swarm != nil {
		if port := swarmPort(n.swarm); port != "" {
			dcfg.TXT = map[string]string{"swarm": port}
		}
		onPeer = bootstrapFromPeers(n.swarm)
		g.Go(func() error { return n.seed.run(ctx) })
		g.Go(func() error { return seedExisting(ctx, n.store, n.seed) })
	}
	g.Go(func() error { return runDiscovery(ctx, log, n.peers, dcfg, onPeer) })
	var httpTook time.Duration
	var unused int
	g.Go(func() error {
		<-ctx.Done()
		began := time.Now()
		var cut int
		var err error
		unused, cut, err = stopHTTP(n.http, n.conns, shutdownGrace)
		httpTook = time.Since(began)
		if cut > 0 {
			log.Info("stopping: answers still being written after the grace were cut", "connections", cut, "grace", shutdownGrace)
		}
		if err != nil {
			log.Warn("stopping the HTTP server", "err", err)
		}
		return nil
	})
	err = g.Wait()
	// How long each step of the stop took goes in the one "stopped" line
	// (debug is one line per request).
	timed := func(close func()) time.Duration {
		began := time.Now()
		close()
		return time.Since(began)
	}
	nodeTook := timed(n.node.Close)
	var swarmTook time.Duration
	if n.swarm != nil {
		swarmTook = timed(func() { n.swarm.Close() })
	}
	storeTook := timed(func() {
		if cerr := n.store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	if err == nil {
		log.Info("pkgswarm stopped", "listen", n.ln.Addr().String(), "data-dir", c.String("data-dir"),
			"http_took", httpTook, "unused_connections_closed", unused, "node_took", nodeTook, "swarm_took", swarmTook, "store_took", storeTook)
	}
	return err
}

func buildServer(c *cli.Context, log, internals *slog.Logger) (*server, error) {
	dataDir := c.String("data-dir")
	if dataDir == "" {
		dataDir = defaultDataDir()
		c.Set("data-dir", dataDir)
	}
	maxBytes, err := parseCacheSize(c.String("cache-size"))
	if err != nil {
		return nil, err
	}
	ports, err := parsePorts(c.String("allow-ports"))
	if err != nil {
		return nil, err
	}
	var clients []netip.Prefix
	if v := c.StringSlice("allow-clients"); len(v) > 0 {
		if clients, err = proxy.ParsePrefixes(v); err != nil {
			return nil, fmt.Errorf("--allow-clients: %w", err)
		}
	}
	mirrors, err := origin.ParseMirrors(c.StringSlice("mirror"))
	if err != nil {
		return nil, fmt.Errorf("--mirror: %w", err)
	}
	egress, err := egressPolicy(c)
	if err != nil {
		return nil, err
	}
	var keyPaths []string
	if c.Bool("system-keyrings") {
		keyPaths = append(keyPaths, apt.DefaultKeyringPaths...)
	}
	keyPaths = append(keyPaths, c.StringSlice("keyring")...)
	kr, err := apt.LoadKeyring(keyPaths...)
	if err != nil {
		return nil, fmt.Errorf("loading keyrings: %w (fix or drop the --keyring named)", err)
	}
	log.Info("trusted keys loaded", "keys", kr.Len())
	rpmCfg, err := rpmSettings(c)
	if err != nil {
		return nil, err
	}
	swarmSet, err := parseSwarmSettings(c)
	if err != nil {
		return nil, err
	}

	// Listen first: a root started on a privileged port keeps it after it
	// becomes the data directory's owner.
	ln, err := listen(c.String("listen"))
	if err != nil {
		return nil, err
	}
	st, storeDir, err := openDataDir(dataDir, store.Options{MaxBytes: maxBytes, Logger: internals}, log,
		"stop it, or give this one another --data-dir")
	if err != nil {
		ln.Close()
		return nil, err
	}
	id, err := nodeID(st)
	if err != nil {
		ln.Close()
		st.Close()
		return nil, fmt.Errorf("node id: %w", err)
	}
	httpPort := ln.Addr().(*net.TCPAddr).Port
	sw, err := newSwarm(c.Context, c, swarmSet, internals, storeDir, httpPort, shareableBlobs{st})
	if err != nil {
		ln.Close()
		st.Close()
		return nil, err
	}
	peers := &peerSet{}
	site := []fetch.Source{&lan.Source{Peers: peers, NodeID: id, Budget: c.Duration("peer-budget")}}
	var wide []fetch.Source
	var seed *seeder
	var onShareable func(store.Digest)
	var sideHash func(int64) fetch.SideHasher
	if sw != nil {
		peers.banIP = sw.Ban
		stier := &swarmtier.Source{Node: sw, FindTimeout: c.Duration("swarm-find-timeout"),
			Local: peers.hostPorts}
		// The peer protocol across sites: other sites' downloads in flight,
		// found on the DHT (one origin copy per fleet, not per site).
		stier.Wide = &lan.Source{Peers: widePeers{stier}, SelfID: sw.HTTPAddr, Label: "swarm", Wide: true, Budget: time.Second}
		wide = append(wide, stier)
		seed = newSeeder(sw, st, log)
		onShareable = seed.offer
		sideHash = pieceHashes(sw, log)
	}
	nd, err := node.New(node.Config{
		Store: st, AptKeyring: kr, RPMKeys: rpmCfg.Keys, RPMConfiguredKeysOnly: rpmCfg.ConfiguredKeysOnly,
		Revalidate: c.Duration("revalidate"), OnShareable: onShareable, SideHash: sideHash,
		AllowPorts: ports, Mirrors: mirrors, Egress: egress, OriginConns: c.Int("origin-connections"), OriginPipeline: c.Int("origin-pipeline-depth"), Offline: c.Bool("offline"),
		Site: site, Wide: wide,
		AllowClients: clients, ConnectAllow: connectAllow(c.StringSlice("connect-allow")), Hold: c.Duration("hold"),
		NodeID: id, Version: version, Peers: peers.list, Logger: log,
		Extra: func() map[string]any {
			if sw == nil {
				return nil
			}
			return map[string]any{"swarm": sw.Stats()}
		},
	})
	if err != nil {
		ln.Close()
		st.Close()
		return nil, err
	}
	if sw != nil {
		nd.Proxy.Handle(swarm.HandlerPath, sw.Handler())
		nd.Proxy.Handle("GET /_pkgswarm/v1/magnet/sha256/{hex}", magnetHandler(sw, st))
	}
	conns := &connGate{}
	hs := &http.Server{Handler: nd.Handler, ConnContext: nd.Proxy.ConnContext, ConnState: conns.track, ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return &server{id: id, log: log, internals: internals, store: st, node: nd, http: hs, conns: conns, ln: nd.Proxy.Readahead(ln), peers: peers, swarm: sw, seed: seed}, nil
}

// egressFlags are the serve flags of the origin address policy.
func egressFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "allow-origin-loopback", EnvVars: env("allow-origin-loopback"),
			Usage: "allow loopback addresses and this node's own addresses as origins (a mirror on this machine); without it they are refused, so that clients cannot reach local services through pkgswarm"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "allow-origin-link-local", EnvVars: env("allow-origin-link-local"),
			Usage: "allow link-local addresses (169.254.0.0/16, fe80::/10, where cloud metadata services listen) as origins"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "origin-connections", EnvVars: env("origin-connections"), Value: origin.DefaultMaxConnsPerHost,
			Usage: "connections open to one origin host at most (requests apt pipelines are fetched in parallel over them when that is faster than in order on one: an origin that paces each connection)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "origin-pipeline-depth", EnvVars: env("origin-pipeline-depth"), Value: origin.DefaultPipelineDepth,
			Usage: "requests in flight at once on one connection to an http:// origin (HTTP/1.1 pipelining, as apt's Acquire::http::Pipeline-Depth); 1 turns pipelining off"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "deny-origin-private", EnvVars: env("deny-origin-private"),
			Usage: "refuse origins in private ranges (10/8, 172.16/12, 192.168/16, fc00::/7); without it they are allowed, for LAN mirrors"}),
	}
}

func egressPolicy(c *cli.Context) (origin.Egress, error) {
	return origin.Egress{AllowLoopback: c.Bool("allow-origin-loopback"), AllowLinkLocal: c.Bool("allow-origin-link-local"),
		DenyPrivate: c.Bool("deny-origin-private")}, nil
}

// connectAllow splits comma-separated host:port lists.
func connectAllow(list []string) []string {
	var out []string
	for _, item := range list {
		for _, a := range strings.Split(item, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, strings.ToLower(a))
			}
		}
	}
	return out
}
