package swarm

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// Blobs gives the swarm read access to verified blobs. It is implemented by
// the content store.
type Blobs interface {
	// OpenBlob opens the verified blob with the given lower-case hex SHA-256
	// digest and returns it with its size. The caller closes the file. When the
	// store does not hold the blob the error wraps fs.ErrNotExist. It may be
	// called many times for one blob, from many goroutines.
	OpenBlob(hexDigest string) (*os.File, int64, error)
}

// Errors returned (wrapped) by Fetch and Seed.
var (
	// ErrNotFound: no holder of the blob was found within Config.FindTimeout,
	// or the swarm is off. The caller should try the next source.
	ErrNotFound = errors.New("not found in the swarm")
	// ErrTooSmall: the blob is smaller than Config.MinSize; one HTTP GET is
	// cheaper than a swarm download for it.
	ErrTooSmall = errors.New("blob too small for the swarm")
)

// ListenAddrError is New's error when Config.ListenAddr is not one of the
// forms it documents.
type ListenAddrError struct {
	Addr   string // Config.ListenAddr as given
	Reason string // what is wrong with it, e.g. "missing port"
}

func (e *ListenAddrError) Error() string {
	return fmt.Sprintf("swarm: listen address %q: %s", e.Addr, e.Reason)
}

// dhtPacketsPerSecond bounds this node's DHT traffic (queries and replies).
const dhtPacketsPerSecond = 100

// Bootstrap pings (pingBootstrap).
const (
	bootstrapPingTimeout = time.Second
	bootstrapRetryFirst  = 250 * time.Millisecond
	bootstrapRetryMax    = time.Minute
	maxOwnAddrs          = 4 // addresses a wildcard listener answers for itself with
)

// DefaultNamespace prefixes rendezvous keys unless Config.Namespace is set.
const DefaultNamespace = "pkgswarm/v1"

// DefaultMinSize is the default Config.MinSize. BenchmarkFetch on loopback
// (one holder, 2 shared cores) measured a swarm fetch at ~30 ms fixed cost
// (DHT lookup, metainfo GET, handshake, request scheduling) plus ~5 ms/MiB,
// against ~0.2 ms + ~0.7 ms/MiB for one HTTP GET:
//
//	size      swarm    HTTP GET
//	64 KiB    ~30 ms   0.2 ms
//	256 KiB   ~31 ms   0.2 ms
//	1 MiB     ~40 ms   0.7 ms
//	2 MiB     ~45 ms   1.3 ms
//	4 MiB     ~48 ms   2.0 ms
//	8 MiB     ~70 ms   5–10 ms
//
// The swarm never beats a direct GET from one nearby source; it pays off by
// spreading a large file over several holders and sparing the origin. A blob
// under 1 MiB has at most four 256 KiB pieces, so few holders could share it
// while the fixed cost dominates: below 1 MiB the swarm is not used.
const DefaultMinSize = 1 << 20

// HandlerPath is where Handler expects to be mounted: it serves
// GET/HEAD HandlerPath + "sha256/<hex>".
const HandlerPath = "/_pkgswarm/v1/torrent/"

// Config configures a Node. Zero values are documented per field.
type Config struct {
	// DataDir holds downloads in progress (DataDir/scratch, deleted when a
	// Fetch is closed) and cached info dicts (DataDir/info) so that a restart
	// does not rehash seeded blobs. Required unless Mode is "off".
	DataDir string
	// ListenAddr is where the node listens for BitTorrent peers (TCP) and
	// the DHT (UDP, same port), and nowhere else:
	//
	//	":6881"            every address of both families (0.0.0.0 and [::])
	//	"0.0.0.0:6881"     every IPv4 address, no IPv6 socket
	//	"[::]:6881"        every IPv6 address (IPV6_V6ONLY), no IPv4 socket
	//	"192.0.2.7:6881"   that address only; likewise "[2001:db8::7]:6881",
	//	                   "[fe80::7%eth0]:6881"
	//
	// The host must be an IP address, not a name. A node listening on one
	// family talks to peers of that family only; with one address, outgoing
	// connections are made from it. Port 0 means a free port; "" means
	// ":0". Anything else fails New with a *ListenAddrError.
	ListenAddr string
	// Mode is "off" (Seed does nothing, Fetch returns ErrNotFound), "lan"
	// (the DHT is bootstrapped only from Bootstrap and AddBootstrap addresses,
	// never from public routers) or "public" (the library's public DHT
	// routers plus Bootstrap). "" means "lan".
	Mode string
	// Bootstrap lists host:port addresses of DHT nodes.
	Bootstrap []string
	// Namespace prefixes rendezvous keys; "" means DefaultNamespace. Nodes
	// with different namespaces do not find each other's blobs by digest
	// (plain BitTorrent magnets still work).
	Namespace string
	// UploadRate and DownloadRate limit BitTorrent payload in bytes per
	// second; 0 means unlimited.
	UploadRate, DownloadRate int64
	// MaxSeeded caps the number of seeded blobs; 0 means 10000. Beyond it
	// the least recently (re)seeded blobs stop being seeded.
	MaxSeeded int
	// LastUsed, if set, reports when a client or peer last read a seeded
	// blob (lower-case hex SHA-256). A blob unused for AnnounceIdle is no
	// longer re-announced on the DHT (its entries there expire); it stays
	// seeded for the peers that already know this node, and is announced
	// again at its next re-announce time once it is used again.
	LastUsed func(hexDigest string) time.Time
	// AnnounceIdle is how long after its last use a blob is still
	// re-announced; 0 means DefaultAnnounceIdle; negative re-announces every
	// seeded blob.
	AnnounceIdle time.Duration
	// MinSize: blobs smaller than this are neither seeded nor fetched
	// (ErrTooSmall). 0 means DefaultMinSize; negative means no minimum.
	MinSize int64
	// HTTPPort is the TCP port of the pkgswarm HTTP server that mounts
	// Handler at HandlerPath. It is announced on the DHT under the rendezvous
	// key. 0 means the node serves Handler itself on a free TCP port of
	// ListenAddr's host (see MetainfoAddr).
	HTTPPort int
	// FindTimeout bounds how long Fetch looks for a holder before returning
	// ErrNotFound; 0 means 3 s.
	FindTimeout time.Duration
	// Blobs gives access to verified blobs. Required unless Mode is "off".
	Blobs Blobs
	// Logger receives the node's logs and the library's warnings; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Node is one swarm participant: an anacrolix/torrent client with its DHT
// node. Its methods are safe for concurrent use.
type Node struct {
	cfg       Config
	log       *slog.Logger
	namespace string
	minSize   int64
	maxSeeded int

	cl         *torrent.Client // nil when Mode is "off"
	dht        *dht.Server
	peers      *peerStore
	bans       *banList
	listen     listenPlan   // where the node listens, from Config.ListenAddr
	host       netip.Addr   // listen.host: the IP ListenAddr names; invalid for a wildcard
	tcpLn      net.Listener // our own BitTorrent TCP listener, when host is valid
	httpLn     net.Listener // our own metainfo listener, when Config.HTTPPort is 0
	httpSrv    *http.Server
	httpPort   int
	httpClient *http.Client

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the announcer

	primed primedInfos // info dicts from piece hashes computed while downloading

	mu        sync.Mutex // protects the fields below
	seeded    map[string]*seedEntry
	order     *list.List // of *seedEntry, least recently seeded first
	fetches   map[string]*fetchState
	fetchByIH map[metainfo.Hash]*fetchState
	hints     map[string][]string
	bootstrap []string
	ownAddrs  []netip.Addr      // for a wildcard listener: its own addresses DHT nodes see it at (learnOwnAddr)
	recent    []*fetchRecord    // last maxRecent fetches, oldest first
	libBans   map[string]string // IP → why the library banned it (see libLogHandler)
	closed    bool

	flightMu sync.Mutex           // protects flights
	flights  map[string]time.Time // blobs whose flight was announced, when

	dhtCount    dhtCounters
	announces   atomic.Int64 // DHT announce traversals run for seeded blobs
	idleSkipped atomic.Int64 // re-announces left out: the blob was not read lately
	// saturatedSkipped counts re-announces whose walk found the key
	// saturated (announce_peer not sent).
	saturatedSkipped atomic.Int64
}

type seedEntry struct {
	hex     string
	size    int64
	ih      metainfo.Hash
	info    []byte
	storage *blobStorage
	t       *torrent.Torrent // nil while a Fetch of the same blob holds the infohash
	elem    *list.Element

	lastAnnounce time.Time
	announced    bool // last announce reached at least one DHT node
}

// New starts a node. Close it to stop.
func New(ctx context.Context, cfg Config) (*Node, error) {
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		namespace: cfg.Namespace,
		minSize:   cfg.MinSize,
		maxSeeded: cfg.MaxSeeded,
		peers:     newPeerStore(),
		bans:      newBanList(),
		kick:      make(chan struct{}, 1),
		seeded:    map[string]*seedEntry{},
		order:     list.New(),
		fetches:   map[string]*fetchState{},
		fetchByIH: map[metainfo.Hash]*fetchState{},
		hints:     map[string][]string{},
		libBans:   map[string]string{},
		bootstrap: append([]string(nil), cfg.Bootstrap...),
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("component", "swarm")
	if n.namespace == "" {
		n.namespace = DefaultNamespace
	}
	switch {
	case n.minSize == 0:
		n.minSize = DefaultMinSize
	case n.minSize < 0:
		n.minSize = 1
	}
	if n.maxSeeded <= 0 {
		n.maxSeeded = 10000
	}
	if n.cfg.FindTimeout <= 0 {
		n.cfg.FindTimeout = 3 * time.Second
	}
	if n.cfg.AnnounceIdle == 0 {
		n.cfg.AnnounceIdle = DefaultAnnounceIdle
	}
	if n.cfg.Mode == "" {
		n.cfg.Mode = "lan"
	}
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	switch n.cfg.Mode {
	case "off":
		return n, nil
	case "lan", "public":
	default:
		return nil, fmt.Errorf("swarm: mode %q is not one of off, lan, public", cfg.Mode)
	}
	plan, err := parseListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	n.listen, n.host = plan, plan.host
	if cfg.Blobs == nil {
		return nil, errors.New("swarm: Config.Blobs is required unless mode is off")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("swarm: Config.DataDir is required unless mode is off")
	}
	for _, d := range []string{n.scratchDir(), n.infoDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("swarm: creating %s: %w", d, err)
		}
	}
	// Scratch files left by a crash are never resumed.
	if ents, err := os.ReadDir(n.scratchDir()); err == nil {
		for _, e := range ents {
			os.Remove(filepath.Join(n.scratchDir(), e.Name()))
		}
	}
	if err := n.startClient(); err != nil {
		n.cancel()
		n.closeListeners()
		return nil, err
	}
	n.wg.Add(1)
	go n.announcer()
	return n, nil
}

func (n *Node) scratchDir() string { return filepath.Join(n.cfg.DataDir, "scratch") }
func (n *Node) infoDir() string    { return filepath.Join(n.cfg.DataDir, "info") }

func (n *Node) startClient() error {
	cc := torrent.NewDefaultClientConfig()
	cc.Seed = true // ClientConfig.Seed is false by default: finished torrents would stop uploading.
	cc.NoDefaultPortForwarding = true
	cc.DisableTrackers = true
	cc.DisableWebtorrent = true
	cc.DefaultStorage = refuseStorage{}
	cc.DataDir = n.scratchDir()
	// Each torrent would cost ~9 goroutines re-announcing itself; we announce
	// ourselves, selectively (see announcer).
	cc.PeriodicallyAnnounceTorrentsToDht = false
	cc.DhtStartingNodes = func(string) dht.StartingNodesGetter { return n.startingNodes }
	cc.ConfigureAnacrolixDhtServer = func(sc *dht.ServerConfig) {
		sc.PeerStore = n.peers
		// dht.DefaultSendLimiter (25 packets/s) is one global shared by every
		// server in the process, and replies over the limit are dropped, not
		// delayed: a node then looks dead to a get_peers. Give each node its own
		// limiter and queue replies instead.
		sc.SendLimiter = rate.NewLimiter(dhtPacketsPerSecond, dhtPacketsPerSecond)
		sc.WaitToReply = true
		// Count what the DHT costs (Stats; the fleet benchmark reads it).
		if sc.Conn != nil {
			sc.Conn = &countingConn{PacketConn: sc.Conn, c: &n.dhtCount}
		}
	}
	cc.IPBlocklist = n.bans
	cc.Slogger = slog.New(&libLogHandler{n: n, inner: n.log.Handler()})
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, n.onUsefulData)
	if n.cfg.UploadRate > 0 {
		cc.UploadRateLimiter = rate.NewLimiter(rate.Limit(n.cfg.UploadRate), max(int(n.cfg.UploadRate), 1<<20))
	}
	if n.cfg.DownloadRate > 0 {
		// Never rate.NewLimiter(rate.Inf, 0): a zero burst blocks every connection.
		cc.DownloadRateLimiter = rate.NewLimiter(rate.Limit(n.cfg.DownloadRate), max(int(n.cfg.DownloadRate), 1<<20))
	}
	// The default (10 dials/s) makes every Fetch after the tenth in a second
	// wait ~100 ms for its first peer: one Fetch is one torrent with its own
	// connections, so an upgrade of many packages dials a lot.
	cc.DialRateLimiter = rate.NewLimiter(100, 50)
	// Peers connect over TCP only. The pure-Go uTP (CGO_ENABLED=0) stalled
	// transfers for seconds on loopback; the UDP socket still carries the DHT.
	cc.DisableUTP = true
	// The library listens on tcp4, tcp6, udp4 and udp6, each on the one
	// host ListenHost gives, and fails outright when a host does not fit a
	// network ("listen tcp6: address 0.0.0.0: no suitable address found"),
	// or binds "::" as 0.0.0.0 on the IPv4 ones. Only the address's own
	// family is left on.
	cc.DisableIPv4 = !n.listen.ipv4
	cc.DisableIPv6 = !n.listen.ipv6

	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		lastErr = n.tryStartClient(cc)
		if lastErr == nil {
			break
		}
		if n.listen.port != 0 {
			break
		}
	}
	if lastErr != nil {
		return lastErr
	}
	for _, s := range n.cl.DhtServers() {
		if w, ok := s.(torrent.AnacrolixDhtServerWrapper); ok {
			n.dht = w.Server
			break
		}
	}
	if n.dht == nil {
		return errors.New("swarm: the torrent client started no DHT server")
	}

	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if n.host.IsValid() {
		dialer.LocalAddr = n.listen.tcpAddr(0)
	}
	tcp := n.listen.tcpNetwork()
	n.httpClient = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, tcp, addr)
			},
			MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
		},
		Timeout: 10 * time.Second,
	}

	n.httpPort = n.cfg.HTTPPort
	if n.httpPort == 0 {
		// Not net.Listen("tcp", "0.0.0.0:0"): Go makes that a dual-stack
		// [::] socket.
		ln, err := net.ListenTCP(tcp, n.listen.tcpAddr(0))
		if err != nil {
			return fmt.Errorf("swarm: listening for metainfo requests on %s: %w", n.listen.tcpAddr(0), err)
		}
		n.httpLn = ln
		n.httpPort = ln.Addr().(*net.TCPAddr).Port
		mux := http.NewServeMux()
		mux.Handle(HandlerPath, n.Handler())
		n.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go n.httpSrv.Serve(ln)
	}
	for _, a := range n.bootstrap {
		n.pingBootstrap(a)
	}
	return nil
}

// tryStartClient starts the torrent client. With a specific host IP it opens
// the TCP listener itself and dials from that IP, so that peers (and bans)
// see one address per node even on a multi-address host or loopback.
func (n *Node) tryStartClient(cc *torrent.ClientConfig) error {
	p := n.listen
	if p.host.IsValid() {
		ln, err := net.ListenTCP(p.tcpNetwork(), p.tcpAddr(p.port))
		if err != nil {
			return fmt.Errorf("swarm: listening on %s: %w", p.tcpAddr(p.port), err)
		}
		cc.DisableTCP = true
		// The library now opens only the UDP socket of host's family, on
		// the port the TCP listener got.
		host := p.host.String()
		cc.ListenHost = func(string) string { return host }
		cc.ListenPort = ln.Addr().(*net.TCPAddr).Port
		cl, err := torrent.NewClient(cc)
		if err != nil {
			ln.Close()
			return fmt.Errorf("swarm: starting BitTorrent client on %s: %w", ln.Addr(), err)
		}
		n.tcpLn = ln
		n.cl = cl
		cl.AddListener(ln)
		cl.AddDialer(torrent.NetworkDialer{Network: p.tcpNetwork(), Dialer: &net.Dialer{LocalAddr: p.tcpAddr(0)}})
		return nil
	}
	// A wildcard: "" is 0.0.0.0 on the IPv4 networks and [::] (IPV6_V6ONLY,
	// as Go sets it for tcp6 and udp6) on the IPv6 ones; the family left
	// out is disabled in cc.
	cc.ListenHost = func(string) string { return "" }
	cc.ListenPort = p.port
	cl, err := torrent.NewClient(cc)
	if err != nil {
		return fmt.Errorf("swarm: starting BitTorrent client on %s: %w", p, err)
	}
	n.cl = cl
	return nil
}

func (n *Node) closeListeners() {
	if n.httpSrv != nil {
		n.httpSrv.Close()
	}
	if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.tcpLn != nil {
		n.tcpLn.Close()
	}
}

// Close stops seeding and fetching, and releases the ports. Readers returned
// by Fetch fail after Close.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	var errs []error
	if n.cl != nil {
		errs = append(errs, n.cl.Close()...)
	}
	n.closeListeners()
	return errors.Join(errs...)
}

// startingNodes bootstraps the DHT: Bootstrap and AddBootstrap addresses,
// plus the public routers in "public" mode only.
func (n *Node) startingNodes() ([]dht.Addr, error) {
	n.mu.Lock()
	addrs := append([]string(nil), n.bootstrap...)
	n.mu.Unlock()
	var ret []dht.Addr
	for _, a := range addrs {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			n.log.Warn("ignoring DHT bootstrap address", "addr", a, "err", err)
			continue
		}
		ret = append(ret, dht.NewAddr(ua))
	}
	if n.cfg.Mode == "public" {
		pub, err := dht.GlobalBootstrapAddrs("udp")
		if err != nil && len(ret) == 0 {
			return nil, err
		}
		ret = append(ret, pub...)
	}
	return ret, nil
}

// AddBootstrap adds DHT nodes learned at runtime (e.g. LAN peers' swarm ports
// found by mDNS). They are pinged at once, and announces that found nobody are
// retried.
func (n *Node) AddBootstrap(addrs ...string) {
	if n.cl == nil {
		return
	}
	n.mu.Lock()
	for _, a := range addrs {
		dup := false
		for _, b := range n.bootstrap {
			dup = dup || a == b
		}
		if !dup {
			n.bootstrap = append(n.bootstrap, a)
		}
	}
	n.mu.Unlock()
	for _, a := range addrs {
		n.pingBootstrap(a)
	}
}

// pingBootstrap pings a bootstrap node until it answers: it may start after
// this node (an office where the machine everyone bootstraps from boots
// last), and the DHT itself sends one query and tries again only with its
// routing-table refresh, a minute later. Tries are bootstrapPingTimeout long
// and spaced from bootstrapRetryFirst, doubling up to bootstrapRetryMax, for
// as long as the node runs. An answer after a lost try starts a bootstrap
// (the DHT's own one at start went nowhere), and every answer tells this node
// the address it is seen at (learnOwnAddr).
func (n *Node) pingBootstrap(a string) {
	ua, err := net.ResolveUDPAddr("udp", a)
	if err != nil {
		n.log.Warn("ignoring DHT bootstrap address", "addr", a, "err", err)
		return
	}
	if own, ok := netip.ParseAddrPort(n.DHTAddr()); ok == nil && ua.AddrPort() == own {
		return
	}
	addr := dht.NewAddr(ua)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		wait := bootstrapRetryFirst
		for try := 1; ; try++ {
			ctx, cancel := context.WithTimeout(n.ctx, bootstrapPingTimeout)
			res := n.dht.Query(ctx, addr, "ping", dht.QueryInput{})
			cancel()
			if res.Err == nil {
				if id := res.Reply.SenderID(); id != nil {
					n.dht.NodeRespondedToPing(addr, id.Int160())
				}
				n.learnOwnAddr(res.Reply.IP)
				if try > 1 {
					n.log.Debug("DHT bootstrap node answered", "addr", a, "tries", try)
					if _, err := n.dht.BootstrapContext(n.ctx); err != nil {
						n.log.Debug("DHT bootstrap after a late answer", "addr", a, "err", err)
					}
				}
				n.kickAnnouncer()
				return
			}
			if n.ctx.Err() != nil {
				return
			}
			if try == 5 {
				n.log.Warn("DHT bootstrap node does not answer; still trying", "addr", a, "tries", try, "next_in", wait,
					"hint", "check --swarm-bootstrap and that UDP reaches that port")
			} else {
				n.log.Debug("DHT bootstrap node did not answer", "addr", a, "tries", try, "err", res.Err)
			}
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, bootstrapRetryMax)
		}
	}()
}

// learnOwnAddr records the address a DHT node saw this node's query come
// from (BEP 42's "ip" in its reply). A node listening on every address has no
// one address to answer get_peers for its own blobs with (addLocalPeers); it
// uses the addresses it is seen at, up to maxOwnAddrs of them, and only those
// that are its own (it can bind them): a hostile DHT node cannot make it
// name another host as the holder of its blobs.
func (n *Node) learnOwnAddr(seen krpc.NodeAddr) {
	if n.host.IsValid() {
		return
	}
	ap, ok := nodeAddrPort(seen)
	if !ok {
		return
	}
	ip := ap.Addr()
	if ip.IsUnspecified() || ip.IsMulticast() || !(ip.Is4() && n.listen.ipv4 || ip.Is6() && n.listen.ipv6) {
		return
	}
	n.mu.Lock()
	if slices.Contains(n.ownAddrs, ip) || len(n.ownAddrs) >= maxOwnAddrs {
		n.mu.Unlock()
		return
	}
	// Bound only to check the address is this host's (a few microseconds,
	// once per address a bootstrap node reports).
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		n.mu.Unlock()
		n.log.Debug("a DHT node sees this node at an address that is not its own", "addr", ip, "err", err)
		return
	}
	pc.Close()
	n.ownAddrs = append(n.ownAddrs, ip)
	var es []*seedEntry
	for _, e := range n.seeded {
		es = append(es, e)
	}
	n.mu.Unlock()
	n.log.Debug("DHT nodes see this node at", "addr", ip)
	for _, e := range es {
		n.addLocalPeers(e)
	}
	n.flightMu.Lock()
	hexes := slices.Collect(maps.Keys(n.flights))
	n.flightMu.Unlock()
	for _, hex := range hexes {
		n.addLocalFlight(hex)
	}
}

// ownHosts returns the IPs this node answers for itself with: its listen
// host, or for a wildcard listener the addresses learnOwnAddr kept.
func (n *Node) ownHosts() []netip.Addr {
	if n.host.IsValid() {
		return []netip.Addr{n.host}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.ownAddrs)
}

// isOwn reports whether ap is this node at port.
func (n *Node) isOwn(ap netip.AddrPort, port int) bool {
	if int(ap.Port()) != port {
		return false
	}
	return slices.Contains(n.ownHosts(), ap.Addr().Unmap())
}

// AddPeerHints records pkgswarm HTTP addresses (host:port of a peer's HTTP
// server, where Handler is mounted) that probably hold the blob. The next
// Fetch of that digest asks them for the metainfo before (and besides)
// looking the digest up on the DHT, and uses them as BitTorrent peers.
func (n *Node) AddPeerHints(hexDigest string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.hints) > 10000 {
		clear(n.hints)
	}
	h := n.hints[hexDigest]
	for _, a := range addrs {
		dup := false
		for _, b := range h {
			dup = dup || a == b
		}
		if !dup && len(h) < 32 {
			h = append(h, a)
		}
	}
	n.hints[hexDigest] = h
}

// DHTAddr returns the UDP address of the node's DHT server ("" when off).
func (n *Node) DHTAddr() string {
	if n.dht == nil {
		return ""
	}
	return n.dht.Addr().String()
}

// PeerAddr returns the BitTorrent address peers can connect to ("" when off).
// With an unspecified ListenAddr host it is ":port".
func (n *Node) PeerAddr() string {
	if n.cl == nil {
		return ""
	}
	host := ""
	if n.host.IsValid() {
		host = n.host.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(n.cl.LocalPort()))
}

// MetainfoAddr returns the address of the node's own metainfo HTTP listener,
// or "" when Config.HTTPPort is set (the pkgswarm HTTP server mounts Handler).
func (n *Node) MetainfoAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Ban refuses DHT traffic and peer connections from the host of addr
// ("ip" or "ip:port": bans apply to the IP) for d, and drops its current
// connections. d ≤ 0 lifts a ban made by Ban (not one the library made for
// bad pieces, which lasts as long as the node).
func (n *Node) Ban(addr string, d time.Duration) {
	ip, err := parseHostIP(addr)
	if err != nil {
		n.log.Warn("cannot ban", "addr", addr, "err", err)
		return
	}
	n.ban(ip, d, "banned by caller")
}

func (n *Node) ban(ip netip.Addr, d time.Duration, why string) {
	if d <= 0 {
		n.bans.mu.Lock()
		delete(n.bans.until, ip.Unmap())
		delete(n.bans.why, ip.Unmap())
		n.bans.mu.Unlock()
		return
	}
	n.bans.ban(ip, time.Now().Add(d), why)
	n.log.Warn("banned peer", "ip", ip, "for", d, "reason", why)
	if n.cl == nil {
		return
	}
	for _, t := range n.cl.Torrents() {
		for _, pc := range t.PeerConns() {
			if a, err := parseHostIP(pc.RemoteAddr.String()); err == nil && a == ip.Unmap() {
				pc.Close()
			}
		}
	}
}

func parseHostIP(addr string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap(), nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is neither ip nor ip:port", addr)
	}
	return ip.Unmap(), nil
}

// Stats is a snapshot of a node's activity.
type Stats struct {
	Seeded int // blobs seeded
	// DHT traffic of the node since it started: UDP packets and bytes
	// received and sent by its DHT server, and the announce traversals it
	// ran for seeded blobs (each is a get_peers walk plus announce_peer to
	// the closest nodes, under the rendezvous key and the infohash).
	DHTPacketsIn, DHTPacketsOut int64
	DHTBytesIn, DHTBytesOut     int64
	Announces                   int64
	// IdleSkipped counts re-announces left out because nobody read the
	// blob within Config.AnnounceIdle.
	IdleSkipped int64
	// SaturatedSkipped counts keys whose re-announce walk found
	// SaturatedPeers holders or more, so that no announce_peer was sent.
	SaturatedSkipped int64
	BytesUp          int64 // payload bytes uploaded to peers
	BytesDown        int64 // useful payload bytes downloaded from peers and web seeds
	// Fetches lists recent fetches, oldest first (at most 32).
	Fetches []FetchStats
	// Banned lists bans in force: the node's own (Ban, poisoned metainfo,
	// failed whole-file digest) and the library's (peers that sent pieces
	// failing their hash; Until is zero: they last as long as the node).
	Banned []Banned
}

// FetchStats describes one Fetch.
type FetchStats struct {
	Digest   string
	Size     int64
	InfoHash string
	Started  time.Time
	Finished time.Time // zero while the fetch is open
	Err      string    // why it failed, if it did
	// Peers maps each remote host (IP, or web seed URL host) to the useful
	// bytes received from it.
	Peers map[string]int64
}

// Banned is one ban in force.
type Banned struct {
	Addr   string
	Until  time.Time
	Reason string
}

// Stats returns a snapshot of the node's activity.
func (n *Node) Stats() Stats {
	var s Stats
	s.DHTPacketsIn, s.DHTPacketsOut = n.dhtCount.pin.Load(), n.dhtCount.pout.Load()
	s.DHTBytesIn, s.DHTBytesOut = n.dhtCount.bin.Load(), n.dhtCount.bout.Load()
	s.Announces = n.announces.Load()
	s.IdleSkipped = n.idleSkipped.Load()
	s.SaturatedSkipped = n.saturatedSkipped.Load()
	n.mu.Lock()
	s.Seeded = len(n.seeded)
	for _, r := range n.recent {
		s.Fetches = append(s.Fetches, r.snapshot())
	}
	reasons := maps.Clone(n.libBans)
	n.mu.Unlock()
	s.Banned = n.bans.list()
	if n.cl != nil {
		cs := n.cl.Stats()
		s.BytesUp = cs.BytesWrittenData.Int64()
		s.BytesDown = cs.BytesReadUsefulData.Int64()
		seen := map[string]bool{}
		for _, ip := range n.cl.BadPeerIPs() {
			if a, err := netip.ParseAddr(ip); err == nil {
				ip = a.Unmap().String()
			}
			if seen[ip] {
				continue
			}
			seen[ip] = true
			r := reasons[ip]
			if r == "" {
				r = "sent data failing a piece hash"
			}
			s.Banned = append(s.Banned, Banned{Addr: ip, Reason: r})
		}
	}
	return s
}

// dhtCounters count a DHT server's UDP traffic.
type dhtCounters struct {
	pin, pout, bin, bout atomic.Int64
}

// countingConn is the DHT server's socket, counting packets and bytes.
type countingConn struct {
	net.PacketConn
	c *dhtCounters
}

func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.c.pin.Add(1)
		c.c.bin.Add(int64(n))
	}
	return n, a, err
}

func (c *countingConn) WriteTo(b []byte, a net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, a)
	if err == nil {
		c.c.pout.Add(1)
		c.c.bout.Add(int64(n))
	}
	return n, err
}

// refuseStorage is the client's default storage: every torrent we add names
// its own, so a torrent without one is a bug, not a reason to write files.
type refuseStorage struct{}

func (refuseStorage) OpenTorrent(context.Context, *metainfo.Info, metainfo.Hash) (storage.TorrentImpl, error) {
	return storage.TorrentImpl{}, errors.New("swarm: torrent added without storage")
}

// openBlobChecked opens a blob and checks its size.
func (n *Node) openBlobChecked(hexDigest string, size int64) (*os.File, error) {
	f, got, err := n.cfg.Blobs.OpenBlob(hexDigest)
	if err != nil {
		return nil, fmt.Errorf("opening blob sha256:%s: %w", hexDigest, err)
	}
	if got != size {
		f.Close()
		return nil, fmt.Errorf("blob sha256:%s is %d bytes, caller said %d", hexDigest, got, size)
	}
	return f, nil
}
