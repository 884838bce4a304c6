package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/swarm"
)

func swarmFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm", EnvVars: env("swarm"), Value: "lan", Usage: "BitTorrent tier: off, lan (DHT bootstrapped only from LAN peers and --swarm-bootstrap) or public (also the public mainline DHT)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "swarm-bootstrap", EnvVars: env("swarm-bootstrap"), Usage: "DHT nodes host:port,... of a private DHT (e.g. other sites' nodes)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm-namespace", EnvVars: env("swarm-namespace"), Usage: "rendezvous namespace replacing \"" + swarm.DefaultNamespace + "\", for a private fleet"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm-listen", EnvVars: env("swarm-listen"), Value: ":6881", Usage: "BitTorrent and DHT address, TCP and UDP: :PORT (every address), 0.0.0.0:PORT (every IPv4 address), [::]:PORT (every IPv6 address), or IP:PORT (that address only)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm-upload-rate", EnvVars: env("swarm-upload-rate"), Value: "0", Usage: "upload limit in bytes/s (e.g. 5M); 0 = unlimited"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm-download-rate", EnvVars: env("swarm-download-rate"), Value: "0", Usage: "download limit in bytes/s; 0 = unlimited"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "swarm-max-seeded", EnvVars: env("swarm-max-seeded"), Value: 10000, Usage: "cap on blobs seeded (least recently added go first)"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "swarm-announce-idle", EnvVars: env("swarm-announce-idle"), Value: swarm.DefaultAnnounceIdle, Usage: "a seeded blob nobody read for this long is no longer re-announced on the DHT (it stays seeded for peers that know this node); negative: re-announce every seeded blob"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "swarm-find-timeout", EnvVars: env("swarm-find-timeout"), Value: 3 * time.Second, Usage: "how long a fetch looks for holders in the swarm before the origin is tried"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "swarm-min-size", EnvVars: env("swarm-min-size"), Value: "1M", Usage: "files smaller than this skip the swarm (one HTTP request is faster; measured, see docs/benchmarks.md)"}),
	}
}

// swarmSettings are the swarm flags, checked before anything starts.
type swarmSettings struct {
	mode              string // off, lan or public
	up, down, minSize int64
	boot              []string
}

// parseSwarmSettings checks the swarm flags: serve calls it before it
// listens or opens the cache, so a mistyped flag changes nothing.
func parseSwarmSettings(c *cli.Context) (swarmSettings, error) {
	var s swarmSettings
	s.mode = c.String("swarm")
	switch s.mode {
	case "off":
		return s, nil
	case "lan", "public":
	default:
		return s, fmt.Errorf("--swarm %q: want off, lan or public", s.mode)
	}
	var err error
	if s.up, err = parseSize(c.String("swarm-upload-rate")); err != nil {
		return s, fmt.Errorf("--swarm-upload-rate: %w", err)
	}
	if s.down, err = parseSize(c.String("swarm-download-rate")); err != nil {
		return s, fmt.Errorf("--swarm-download-rate: %w", err)
	}
	if s.minSize, err = parseSize(c.String("swarm-min-size")); err != nil {
		return s, fmt.Errorf("--swarm-min-size: %w", err)
	}
	addr := c.String("swarm-listen")
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return s, fmt.Errorf("--swarm-listen %q: want IP:PORT or :PORT, e.g. %s", addr, swarmListenExamples)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return s, fmt.Errorf("--swarm-listen %q: %q is not a port number; want IP:PORT or :PORT, e.g. %s", addr, port, swarmListenExamples)
	}
	for _, b := range c.StringSlice("swarm-bootstrap") {
		for _, a := range strings.Split(b, ",") {
			if a = strings.TrimSpace(a); a != "" {
				s.boot = append(s.boot, a)
			}
		}
	}
	return s, nil
}

// newSwarm starts the BitTorrent tier, or returns nil with --swarm off.
func newSwarm(ctx context.Context, c *cli.Context, set swarmSettings, log *slog.Logger, dataDir string, httpPort int, blobs swarm.Blobs) (*swarm.Node, error) {
	if set.mode == "off" {
		return nil, nil
	}
	n, err := swarm.New(ctx, swarm.Config{
		DataDir: filepath.Join(dataDir, "swarm"), ListenAddr: c.String("swarm-listen"), Mode: set.mode,
		Bootstrap: set.boot, Namespace: c.String("swarm-namespace"), UploadRate: set.up, DownloadRate: set.down,
		MaxSeeded: c.Int("swarm-max-seeded"), MinSize: set.minSize, FindTimeout: c.Duration("swarm-find-timeout"), HTTPPort: httpPort, Blobs: blobs, Logger: log,
		LastUsed: lastUsedOf(blobs), AnnounceIdle: c.Duration("swarm-announce-idle"),
	})
	var bad *swarm.ListenAddrError
	if errors.As(err, &bad) {
		return nil, fmt.Errorf("--swarm-listen %q: %s; want IP:PORT or :PORT, e.g. %s", bad.Addr, bad.Reason, swarmListenExamples)
	}
	if err != nil {
		return nil, fmt.Errorf("starting the swarm on %s: %w (set --swarm-listen, or --swarm off)", c.String("swarm-listen"), err)
	}
	return n, nil
}

// swarmListenExamples are the --swarm-listen forms, for error messages.
const swarmListenExamples = ":6881 (every address), 0.0.0.0:6881 (every IPv4 address), [::]:6881 (every IPv6 address), " +
	"192.168.1.10:6881 or [fd00::10]:6881 (that address only)"

// shareableBlobs gives the swarm the blobs a signed chain vouched for, and
// nothing else.
type shareableBlobs struct{ st *store.Store }

func (v shareableBlobs) OpenBlob(hexDigest string) (*os.File, int64, error) {
	d, err := store.ParseDigest(hexDigest)
	if err != nil {
		return nil, 0, fmt.Errorf("blob %q: %w", hexDigest, fs.ErrNotExist)
	}
	if !v.st.Shareable(d) {
		return nil, 0, fmt.Errorf("blob sha256:%s is not vouched for by a signed chain: %w", hexDigest, fs.ErrNotExist)
	}
	f, size, err := v.st.OpenBlob(d)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("blob sha256:%s: %w", hexDigest, fs.ErrNotExist)
	}
	return f, size, err
}

// LastUsed is when a client or peer last read the blob: the store's LRU
// time (a zero time when the store does not hold it).
func (v shareableBlobs) LastUsed(hexDigest string) time.Time {
	d, err := store.ParseDigest(hexDigest)
	if err != nil {
		return time.Time{}
	}
	info, err := v.st.Stat(d)
	if err != nil {
		return time.Time{}
	}
	return info.LastAccess
}

// lastUsedOf returns blobs' LastUsed, or nil when it has none.
func lastUsedOf(blobs swarm.Blobs) func(string) time.Time {
	if u, ok := blobs.(interface{ LastUsed(string) time.Time }); ok {
		return u.LastUsed
	}
	return nil
}

// seeder seeds verified blobs off the request path: the first Seed of a
// blob hashes it.
type seeder struct {
	n   *swarm.Node
	st  *store.Store
	log *slog.Logger
	ch  chan seedJob
}

type seedJob struct {
	hex  string
	size int64
}

func newSeeder(n *swarm.Node, st *store.Store, log *slog.Logger) *seeder {
	return &seeder{n: n, st: st, log: log, ch: make(chan seedJob, 4096)}
}

// offer queues a blob; it never blocks (a full queue drops the job: the
// blob is seeded again at the next start).
func (s *seeder) offer(d store.Digest) {
	bi, err := s.st.Stat(d)
	if err != nil {
		return
	}
	select {
	case s.ch <- seedJob{d.String(), bi.Size}:
	default:
		s.log.Debug("seed queue full; blob not seeded now", "sha256", d)
	}
}

func (s *seeder) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-s.ch:
			if err := s.n.Seed(j.hex, j.size); err != nil && !errors.Is(err, swarm.ErrTooSmall) {
				s.log.Warn("seeding failed", "sha256", j.hex, "err", err)
			}
		}
	}
}

// pieceHashes returns the fetch pipeline's SideHash for a node that seeds:
// the torrent piece hashes of every download the swarm would seed are
// computed as its bytes arrive and handed to the node at commit, so that
// seeding the blob reads and hashes nothing (a 320 MB package cost about a
// quarter of a CPU second of SHA-1 right after it arrived, on every node of
// a fleet at once: swarm's BenchmarkPieceHasher).
func pieceHashes(n *swarm.Node, log *slog.Logger) func(int64) fetch.SideHasher {
	return func(size int64) fetch.SideHasher {
		if !n.Seeds(size) {
			return nil
		}
		return &primer{PieceHasher: swarm.NewPieceHasher(size), n: n, size: size, log: log}
	}
}

// primer is a download's piece hasher; Done primes the node with it.
type primer struct {
	*swarm.PieceHasher
	n    *swarm.Node
	size int64
	log  *slog.Logger
}

func (p *primer) Done(d store.Digest) {
	pieces, ok := p.Pieces()
	if !ok {
		return
	}
	if err := p.n.PrimeInfo(d.String(), p.size, pieces); err != nil {
		p.log.Warn("piece hashes computed while downloading not used; seeding will hash the blob", "sha256", d, "err", err)
	}
}

// seedExisting queues every shareable blob already in the store, until ctx
// ends. A node told to stop before it has queued them all is not failing:
// that returns nil (the rest are queued at the next start), not an error
// that would make serve exit with a failure status.
func seedExisting(ctx context.Context, st *store.Store, s *seeder) error {
	err := st.Shareables(func(d store.Digest) error {
		bi, err := st.Stat(d)
		if err != nil {
			return nil
		}
		select {
		case s.ch <- seedJob{d.String(), bi.Size}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// bootstrapFromPeers adds each LAN peer's DHT address (TXT "swarm") to the
// swarm's bootstrap set: with --swarm lan the DHT is made of LAN peers.
func bootstrapFromPeers(n *swarm.Node) func(discovery.Peer, bool) {
	return func(p discovery.Peer, added bool) {
		port := p.TXT["swarm"]
		if !added || port == "" || len(p.Addrs) == 0 {
			return
		}
		for _, ip := range p.Addrs {
			n.AddBootstrap(net.JoinHostPort(ip.String(), port))
		}
	}
}

// magnetHandler serves GET /_pkgswarm/v1/magnet/sha256/<hex>: the magnet
// link of a seeded blob, for `pkgswarm magnet`.
func magnetHandler(n *swarm.Node, st *store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := store.ParseDigest(r.PathValue("hex"))
		if err != nil {
			http.Error(w, "pkgswarm: "+err.Error(), http.StatusBadRequest)
			return
		}
		bi, err := st.Stat(d)
		if err != nil || !st.Shareable(d) {
			http.Error(w, "pkgswarm: no verified blob sha256:"+d.String()+" in this cache", http.StatusNotFound)
			return
		}
		if err := n.Seed(d.String(), bi.Size); err != nil {
			http.Error(w, "pkgswarm: "+err.Error(), http.StatusConflict)
			return
		}
		m, err := n.Magnet(d.String(), bi.Size)
		if err != nil {
			http.Error(w, "pkgswarm: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false) // a magnet's & is a plain &, not \u0026
		enc.Encode(map[string]any{"sha256": d.String(), "size": bi.Size, "magnet": m})
	})
}

func swarmPort(n *swarm.Node) string {
	_, port, err := net.SplitHostPort(n.DHTAddr())
	if err != nil {
		return ""
	}
	if _, err := strconv.Atoi(port); err != nil {
		return ""
	}
	return port
}
