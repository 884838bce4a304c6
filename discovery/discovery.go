package discovery

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// failureLimit is how many failures ReportFailure (or consecutive failed
// probes) take to mark a peer unhealthy.
const failureLimit = 3

// Discovery keeps the set of live peers. Create it with New and run it with Run.
// Its methods are safe for concurrent use.
type Discovery struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // protects the fields below
	peers    map[string]*peerState
	bans     map[string]time.Time // by peer ID; outlives the peer's entry
	subs     []func(Peer, bool)
	pending  []event // subscriber calls not yet made, in order
	snapshot []Peer  // Peers() answer; nil when it must be rebuilt
	running  bool

	notifyMu sync.Mutex // held while subscribers are called, so calls never overlap

	wake chan struct{} // nudges the health loop (buffered, 1)
}

// peerState is a Peer plus bookkeeping.
type peerState struct {
	Peer
	key      string // "static:<url>" or "mdns:<id>"
	instance string // mDNS instance name (for goodbyes)
	self     bool   // a static URL that turned out to be us
	member   bool   // in the published set (Peers, Subscribe)

	probing   bool
	nextProbe time.Time
}

type event struct {
	p     Peer
	added bool
}

// New checks cfg and returns a Discovery that does nothing until Run.
func New(cfg Config) (*Discovery, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Discovery{
		cfg:   c,
		log:   c.Logger.With("component", "discovery"),
		peers: map[string]*peerState{},
		bans:  map[string]time.Time{},
		wake:  make(chan struct{}, 1),
	}
	for _, s := range c.Static {
		u, _ := normalizeStatic(s) // checked by withDefaults
		key := "static:" + u
		if _, dup := d.peers[key]; dup {
			continue
		}
		addrs, port := staticAddr(u)
		d.peers[key] = &peerState{key: key, Peer: Peer{URL: u, Addrs: addrs, Port: port, Source: SourceStatic}}
	}
	return d, nil
}

// Run announces and browses (with MDNS) and checks peer health until ctx
// ends; on the way out it sends an mDNS goodbye. It returns nil when ctx
// ends, or an error when mDNS cannot start (no usable interface, port 5353
// not bindable). Run must be called at most once at a time.
func (d *Discovery) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("discovery: Run called while already running")
	}
	d.running = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()

	var r *responder
	if d.cfg.MDNS {
		var err error
		if r, err = d.startMDNS(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if r != nil {
		wg.Go(func() { r.run(ctx) })
	}
	d.healthLoop(ctx)
	cancel()
	wg.Wait() // the goodbye is sent
	if r != nil {
		r.close()
	}
	return nil
}

// Peers returns the live peers, sorted by ID: never this node, never a
// banned or unhealthy peer, never an mDNS peer not seen for ExpireAfter.
// It is cheap (a copy of a cached slice). The Peers share their Addrs and
// TXT with the Discovery: treat them as read-only.
func (d *Discovery) Peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snapshot == nil {
		d.snapshot = []Peer{}
		for _, p := range d.peers {
			if p.member {
				d.snapshot = append(d.snapshot, p.Peer)
			}
		}
		slices.SortFunc(d.snapshot, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	}
	return slices.Clone(d.snapshot)
}

// Ban keeps the peer with this ID out of Peers until the given time (a peer
// that sent bytes failing verification). A ban may name a peer not known yet;
// a later ban replaces an earlier one (so Ban(id, time.Time{}, …) lifts it).
func (d *Discovery) Ban(id string, until time.Time, reason string) {
	d.mu.Lock()
	if until.After(time.Now()) {
		d.bans[id] = until
	} else {
		delete(d.bans, id)
	}
	for _, p := range d.peers {
		if p.ID == id {
			p.BannedUntil = d.bans[id]
			d.snapshot = nil
		}
	}
	if _, banned := d.bans[id]; banned {
		d.log.Warn("peer banned", "peer", id, "until", until.Format(time.RFC3339), "reason", reason)
	} else {
		d.log.Info("peer ban lifted", "peer", id, "reason", reason)
	}
	d.recomputeLocked(time.Now())
	d.mu.Unlock()
	d.flush()
}

// ReportFailure records that a request to the peer failed (timeout, refused,
// bad status). After failureLimit failures without a success in between the
// peer is marked unhealthy and leaves Peers until a health check succeeds.
func (d *Discovery) ReportFailure(id string) {
	d.mu.Lock()
	for _, p := range d.peers {
		if p.ID != id || p.self {
			continue
		}
		p.Failures++
		d.snapshot = nil
		if p.Failures >= failureLimit && p.Healthy {
			p.Healthy = false
			p.nextProbe = time.Time{} // probe again soon
			d.log.Info("peer marked unhealthy", "peer", id, "url", p.URL, "failures", p.Failures)
		}
	}
	d.recomputeLocked(time.Now())
	d.mu.Unlock()
	d.flush()
	d.nudge()
}

// ReportSuccess records that a request to the peer succeeded; it clears the
// failure count.
func (d *Discovery) ReportSuccess(id string) {
	d.mu.Lock()
	for _, p := range d.peers {
		if p.ID == id && p.Failures != 0 {
			p.Failures = 0
			d.snapshot = nil
		}
	}
	d.mu.Unlock()
}

// Subscribe registers fn to be told when a peer enters (added=true) or leaves
// (added=false) the set Peers returns. fn is called once per change, in
// order, never concurrently with another call, from whichever goroutine made
// the change (the Run goroutines, or a caller of Ban/ReportFailure); it must
// not block for long. It may call Peers, but not Ban, ReportFailure or
// ReportSuccess (those would deliver to fn recursively). Peers already in the
// set are not replayed: call Peers after Subscribe for them.
func (d *Discovery) Subscribe(fn func(Peer, bool)) {
	d.mu.Lock()
	d.subs = append(d.subs, fn)
	d.mu.Unlock()
}

// flush delivers pending subscriber events, in order, one caller at a time.
func (d *Discovery) flush() {
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	for {
		d.mu.Lock()
		evs, subs := d.pending, slices.Clone(d.subs)
		d.pending = nil
		d.mu.Unlock()
		if len(evs) == 0 {
			return
		}
		for _, e := range evs {
			for _, fn := range subs {
				fn(e.p, e.added)
			}
		}
	}
}

func (d *Discovery) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// recomputeLocked brings membership up to date at time now: it queues
// subscriber events and forgets expired mDNS peers. d.mu must be held.
func (d *Discovery) recomputeLocked(now time.Time) {
	staticIDs := map[string]bool{}
	for _, p := range d.peers {
		if p.Source == SourceStatic && p.ID != "" && !p.self {
			staticIDs[p.ID] = true
		}
	}
	for key, p := range d.peers {
		expired := p.Source == SourceMDNS && now.Sub(p.LastSeen) > d.cfg.ExpireAfter
		banned := now.Before(p.BannedUntil)
		// A node both configured and found by mDNS is listed once, as static.
		shadowed := p.Source == SourceMDNS && staticIDs[p.ID]
		want := p.ID != "" && !p.self && p.Healthy && !banned && !expired && !shadowed
		if want != p.member {
			p.member = want
			d.snapshot = nil
			d.pending = append(d.pending, event{p: p.Peer, added: want})
			reason := ""
			switch {
			case want:
				d.log.Info("peer joined", "peer", p.ID, "url", p.URL, "source", p.Source)
			case banned:
				reason = "banned"
			case expired:
				reason = "not seen for " + d.cfg.ExpireAfter.String()
			case shadowed:
				reason = "also a static peer"
			case !p.Healthy:
				reason = "unhealthy"
			}
			if !want {
				d.log.Info("peer left", "peer", p.ID, "url", p.URL, "source", p.Source, "reason", reason)
			}
		}
		if expired && !p.member {
			delete(d.peers, key)
		}
	}
}

// forgetLocked drops an mDNS peer at once (goodbye), with reason.
func (d *Discovery) forgetLocked(p *peerState, reason string) {
	if p.member {
		d.pending = append(d.pending, event{p: p.Peer, added: false})
		d.log.Info("peer left", "peer", p.ID, "url", p.URL, "source", p.Source, "reason", reason)
	}
	delete(d.peers, p.key)
	d.snapshot = nil
}

// seen records an mDNS sighting of a pkgswarm instance.
func (d *Discovery) seen(s sighting, now time.Time) {
	if s.goodbye {
		d.mu.Lock()
		for _, p := range d.peers {
			if p.Source == SourceMDNS && strings.EqualFold(p.instance, s.instance) {
				d.forgetLocked(p, "goodbye")
			}
		}
		d.mu.Unlock()
		d.flush()
		return
	}
	txt := parseTXT(s.txt)
	id := txt["id"]
	if id == "" || txt["v"] != "1" {
		d.log.Debug("ignoring mDNS instance without id or with another protocol version", "instance", s.instance, "txt", s.txt)
		return
	}
	if id == d.cfg.NodeID || s.port <= 0 || s.port > 65535 {
		return
	}
	ip := pickAddr(s.ips)
	if ip == nil {
		return
	}
	u := peerURL(ip, s.port)
	d.mu.Lock()
	key := "mdns:" + id
	p, ok := d.peers[key]
	if !ok {
		p = &peerState{key: key, Peer: Peer{ID: id, Source: SourceMDNS, FirstSeen: now, BannedUntil: d.bans[id]}}
		d.peers[key] = p
		d.log.Debug("mDNS peer found", "peer", id, "url", u, "instance", s.instance)
	}
	if p.URL != u {
		if ok {
			d.log.Info("mDNS peer moved", "peer", id, "from", p.URL, "to", u)
		}
		p.URL = u
		p.Healthy = false // its health was for another address
		p.nextProbe = time.Time{}
	}
	p.instance = s.instance
	p.Addrs, p.Port, p.TXT = s.ips, s.port, txt
	p.LastSeen = now
	d.snapshot = nil
	needProbe := !p.Healthy && !p.probing
	d.recomputeLocked(now)
	d.mu.Unlock()
	d.flush()
	if needProbe {
		d.nudge()
	}
}

func parseTXT(txt []string) map[string]string {
	m := make(map[string]string, len(txt))
	for _, t := range txt {
		k, v, _ := strings.Cut(t, "=")
		if k == "" {
			continue
		}
		if _, dup := m[k]; !dup { // RFC 6763 §6.4: the first occurrence wins
			m[k] = v
		}
	}
	return m
}

// pickAddr prefers an IPv4 address, then a global IPv6 one. Link-local IPv6
// needs a zone that the URL cannot carry portably, so it is never picked.
func pickAddr(ips []net.IP) net.IP {
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil && !ip4.IsUnspecified() && !ip4.IsMulticast() {
			return ip4
		}
	}
	for _, ip := range ips {
		if ip.To4() == nil && ip.IsGlobalUnicast() {
			return ip
		}
	}
	return nil
}
