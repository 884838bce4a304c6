package swarmtier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// Protocol is the peer protocol's client (package lan, configured by the
// wiring with Wide set, this Source's PeersFor as its peers and the swarm
// node's HTTPAddr as its node id): it reads a file by ranges from other sites' nodes fetching it
// and elects one of them to go to the origin.
type Protocol interface {
	fetch.Source
	fetch.Penalizer
}

// Source is the swarm tier.
type Source struct {
	Node *swarm.Node
	// Local returns the HTTP addresses ("ip:port") of this node's LAN
	// peers, which the LAN tier already asked; they are left out here. Nil
	// means none.
	Local func() []string
	// MinSize: files smaller than this skip the swarm tier. Zero means
	// 1 MiB (one origin GET per site costs less than an election).
	MinSize int64
	// FindTimeout bounds the first DHT lookup of a file. Zero means 3s.
	FindTimeout time.Duration
	// Wide reads from other sites' downloads in flight (see Protocol). Nil
	// means only holders seeding a file are used (BitTorrent).
	Wide Protocol

	once sync.Once
	dht  *dhtPeers
}

var (
	_ fetch.Source    = (*Source)(nil)
	_ fetch.Penalizer = (*Source)(nil)
)

func (s *Source) init() {
	s.once.Do(func() {
		if s.MinSize == 0 {
			s.MinSize = 1 << 20
		}
		if s.FindTimeout <= 0 {
			s.FindTimeout = 3 * time.Second
		}
		s.dht = &dhtPeers{s: s, files: map[string]*lookup{}}
	})
}

// Name implements fetch.Source.
func (s *Source) Name() string { return "swarm" }

// Fetch implements fetch.Source. It announces that this node fetches the
// file beyond its site and looks the file up on the DHT: a holder that
// seeds it is fetched from by BitTorrent (the swarm package, whole files:
// Body.Start is 0 and the pipeline skips what it holds); otherwise the
// other sites' nodes fetching it now are asked by the peer protocol, by
// ranges, and elect one of them to go to the origin (package lan, Wide).
func (s *Source) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	s.init()
	exp := a.Request.Expect
	if exp == nil || exp.SHA256 == nil || exp.Size < 0 {
		return nil, fmt.Errorf("swarm: %s has no signed digest and size: %w", a.Request.URL, fetch.ErrNotFound)
	}
	if exp.Size < s.MinSize {
		return nil, fmt.Errorf("swarm: %s: %w: %w", a.Request.URL, fetch.ErrNotFound, swarm.ErrTooSmall)
	}
	hex := exp.Hex()
	// Announce before looking: of two sites that miss the file at once, the
	// one that looks second then finds the first (the election needs one
	// of them to see the other). Bounded like the lookup.
	announced := s.Node.AnnounceFlight(hex)
	select {
	case <-announced:
	case <-time.After(s.FindTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	found := s.dht.refresh(ctx, hex, true)
	if len(found.Holders) > 0 {
		body, err := s.Node.Fetch(ctx, hex, exp.Size, nil)
		if err == nil {
			return &fetch.Body{ReadCloser: body, Size: exp.Size}, nil
		}
		if !errors.Is(err, swarm.ErrNotFound) && !errors.Is(err, swarm.ErrTooSmall) {
			return nil, err
		}
	}
	if s.Wide == nil {
		return nil, fmt.Errorf("swarm: no holder seeds %s: %w", a.Request.URL, fetch.ErrNotFound)
	}
	body, err := s.Wide.Fetch(ctx, a)
	if err != nil && !errors.Is(err, fetch.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("swarm: %w", err)
	}
	return body, nil
}

// Penalize implements fetch.Penalizer for what the peer protocol served
// (the library bans BitTorrent peers itself).
func (s *Source) Penalize(a *fetch.Attempt, who string, reason error) {
	s.init()
	if who != "" && s.Wide != nil {
		s.Wide.Penalize(a, who, reason)
	}
}

// dhtPeers is the wide tier's peer set: per file, the nodes the DHT names
// as fetching it, looked up again at most every second in the background.
type dhtPeers struct {
	s *Source

	mu    sync.Mutex // protects files
	files map[string]*lookup
}

type lookup struct {
	found   swarm.Found
	at      time.Time
	running bool
}

// Ban keeps a peer of another site (by its address, "ip:port") out of
// the swarm for the given time.
func (s *Source) Ban(addr string, until time.Time) {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		s.Node.Ban(h, time.Until(until))
	}
}

// PeersFor returns the pkgswarm HTTP addresses ("ip:port") of the other
// sites' nodes fetching or holding the file the peer protocol path what
// names, from what the DHT said last; it looks again in the background when
// that is older than a second. LAN peers (Local) and this node are left out.
func (s *Source) PeersFor(ctx context.Context, what string) []string {
	s.init()
	hex := what[strings.LastIndexByte(what, '/')+1:]
	found := s.dht.refresh(ctx, hex, false)
	local := map[string]bool{}
	if s.Local != nil {
		for _, a := range s.Local() {
			local[a] = true
		}
	}
	var out []string
	for _, a := range append(found.Flights, found.Holders...) {
		if !local[a] {
			local[a] = true // once, if both in flight and holding
			out = append(out, a)
		}
	}
	return out
}

// refresh returns what is known of hex, starting a lookup when the last is
// older than a second; wait makes the first lookup synchronous (bounded by
// FindTimeout).
func (d *dhtPeers) refresh(ctx context.Context, hex string, wait bool) swarm.Found {
	d.mu.Lock()
	l := d.files[hex]
	if l == nil {
		if len(d.files) > 1000 {
			clear(d.files)
		}
		l = &lookup{}
		d.files[hex] = l
	}
	stale := time.Since(l.at) > time.Second && !l.running
	if stale {
		l.running = true
	}
	first := l.at.IsZero()
	d.mu.Unlock()
	if stale {
		run := func() {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.s.FindTimeout)
			defer cancel()
			f, err := d.s.Node.Lookup(lctx, hex)
			d.mu.Lock()
			defer d.mu.Unlock()
			l.running = false
			l.at = time.Now()
			if err == nil {
				l.found = f
			}
		}
		if wait && first {
			run()
		} else {
			go run()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return l.found
}
