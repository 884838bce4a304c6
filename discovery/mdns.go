package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/mdns"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// Why a responder of our own and not hashicorp/mdns's Server (v1.0.7):
//   - it replies by unicast to whoever asked, so multicast queries from other
//     responders (avahi) get answers that nobody else sees, and it never
//     announces or says goodbye (RFC 6762 §8.3, §10.1);
//   - legacy unicast queries (source port not 5353, e.g. dig) get ID 0, no
//     question section and TTL 120: dig rejects the answer (§6.7);
//   - it cannot be limited to several interfaces: its socket is bound to
//     0.0.0.0:5353 and hears every interface;
//   - queries with the TC bit are not answered; known answers are ignored.
// Its client works, and browsing uses it (see browse). That client binds a
// socket to 0.0.0.0:5353 for the length of each query; our unicast sockets
// are bound to the interface address, which the kernel prefers, so unicast
// queries to a node's address still reach the responder.

var mdnsGroupAddr = &net.UDPAddr{IP: net.ParseIP(mdnsGroup), Port: mdnsPort}

// link is one interface the responder works on.
type link struct {
	ifi  net.Interface
	bind net.IP       // the IPv4 address uc is bound to
	ips  []net.IP     // the addresses announced on this link
	nets []*net.IPNet // the interface's own prefixes

	limit multicastLimiter
	uc    *ipv4.PacketConn
	raw   net.PacketConn
}

// responder answers mDNS queries, announces and says goodbye, and passes the
// pkgswarm responses it hears to Discovery.seen.
type responder struct {
	d       *Discovery
	zone    *zone
	mc      *ipv4.PacketConn // bound to 224.0.0.251:5353: every multicast packet
	mcRaw   net.PacketConn
	links   []*link
	byIndex map[int]*link
	service string // "_pkgswarm._tcp.local."

	closed atomic.Bool
	wg     sync.WaitGroup // receive loops and delayed sends

	// query runs one browse query; nil means hashicorp/mdns's
	// QueryContext (tests replace it).
	query func(context.Context, *mdns.QueryParam) error
}

// startMDNS opens the sockets; run starts using them.
func (d *Discovery) startMDNS() (*responder, error) {
	links, err := pickLinks(d.cfg.Interfaces, d.cfg.IPs)
	if err != nil {
		return nil, err
	}
	r := &responder{
		d:       d,
		zone:    newZone(d.cfg.Instance, d.cfg.HostName, d.cfg.Port, d.cfg.services(), d.cfg.txtRecord()),
		byIndex: map[int]*link{},
		service: ServiceType + "." + mdnsDomain,
	}
	lc := net.ListenConfig{Control: reuseAddr}
	r.mcRaw, err = lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort(mdnsGroup, "5353"))
	if err != nil {
		return nil, fmt.Errorf("discovery: mDNS: listen on %s:5353: %w (is another program holding the port without SO_REUSEADDR?)", mdnsGroup, err)
	}
	r.mc = ipv4.NewPacketConn(r.mcRaw)
	if err := r.mc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		r.close()
		return nil, fmt.Errorf("discovery: mDNS: enable packet info: %w", err)
	}
	for _, l := range links {
		if err := r.mc.JoinGroup(&l.ifi, mdnsGroupAddr); err != nil {
			r.close()
			return nil, fmt.Errorf("discovery: mDNS: join %s on %s: %w", mdnsGroup, l.ifi.Name, err)
		}
		l.raw, err = lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort(l.bind.String(), "5353"))
		if err != nil {
			r.close()
			return nil, fmt.Errorf("discovery: mDNS: listen on %s:5353 (%s): %w", l.bind, l.ifi.Name, err)
		}
		l.uc = ipv4.NewPacketConn(l.raw)
		r.links = append(r.links, l)
		// RFC 6762 §11: sent with IP TTL 255. Loopback on, so that other
		// mDNS stacks on this host (and tests) hear us.
		for _, set := range []func() error{
			func() error { return l.uc.SetMulticastInterface(&l.ifi) },
			func() error { return l.uc.SetMulticastTTL(255) },
			func() error { return l.uc.SetMulticastLoopback(true) },
		} {
			if err := set(); err != nil {
				r.close()
				return nil, fmt.Errorf("discovery: mDNS: set up multicast on %s: %w", l.ifi.Name, err)
			}
		}
		r.byIndex[l.ifi.Index] = l
	}
	return r, nil
}

// pickLinks resolves interface names (nil: every up, multicast, non-loopback
// interface) and their addresses.
func pickLinks(names []string, ips []net.IP) ([]*link, error) {
	var ifis []net.Interface
	if names == nil {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("discovery: mDNS: list interfaces: %w", err)
		}
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
				ifis = append(ifis, ifi)
			}
		}
	} else {
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("discovery: mDNS: interface %q: %w", n, err)
			}
			if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
				return nil, fmt.Errorf("discovery: mDNS: interface %q is down or not multicast-capable (flags %v)", n, ifi.Flags)
			}
			ifis = append(ifis, *ifi)
		}
	}
	var links []*link
	var skipped []string
	for _, ifi := range ifis {
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("discovery: mDNS: addresses of %s: %w", ifi.Name, err)
		}
		l := &link{ifi: ifi}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			l.nets = append(l.nets, ipn)
			if ip4 := ipn.IP.To4(); ip4 != nil {
				if l.bind == nil {
					l.bind = ip4
				}
				l.ips = append(l.ips, ip4)
			} else if !ipn.IP.IsLinkLocalUnicast() {
				l.ips = append(l.ips, ipn.IP)
			}
		}
		if l.bind == nil {
			skipped = append(skipped, ifi.Name)
			continue
		}
		if ips != nil {
			l.ips = ips
		}
		links = append(links, l)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("discovery: mDNS: no usable interface (up, multicast, with an IPv4 address; without one: %v); set Interfaces, or turn mDNS off and use static peers", skipped)
	}
	return links, nil
}

func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// run announces, browses and answers until ctx ends, then says goodbye.
func (r *responder) run(ctx context.Context) {
	r.wg.Go(func() { r.recv(r.mc, nil) })
	for _, l := range r.links {
		r.wg.Go(func() { r.recv(l.uc, l) })
	}
	for _, l := range r.links {
		r.announce(l, false)
		r.send(l, startupQuery(r.service), mdnsGroupAddr) // the running nodes answer at once, by unicast
	}
	r.d.log.Info("mDNS started", "instance", r.d.cfg.Instance, "host", r.d.cfg.HostName, "port", r.d.cfg.Port,
		"services", r.d.cfg.services(), "interfaces", r.linkNames())

	var bw sync.WaitGroup
	bw.Go(func() { r.browse(ctx) })
	// RFC 6762 §8.3: at least two announcements, one second apart.
	select {
	case <-time.After(time.Second):
		for _, l := range r.links {
			r.announce(l, false)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	bw.Wait()
	for _, l := range r.links {
		r.announce(l, true)
	}
	r.d.log.Info("mDNS stopped; goodbye sent", "instance", r.d.cfg.Instance)
}

func (r *responder) linkNames() []string {
	var n []string
	for _, l := range r.links {
		n = append(n, l.ifi.Name)
	}
	return n
}

// close closes the sockets and waits for the receive loops.
func (r *responder) close() {
	r.closed.Store(true)
	if r.mcRaw != nil {
		r.mcRaw.Close()
	}
	for _, l := range r.links {
		if l.raw != nil {
			l.raw.Close()
		}
	}
	r.wg.Wait()
}

func (r *responder) announce(l *link, goodbye bool) {
	m := r.zone.announcement(l.ips, goodbye)
	l.limit.mark(m, time.Now())
	r.send(l, m, mdnsGroupAddr)
}

// serviceQuery is a standard (QM) query for the PTR records of service, to
// be multicast from port 5353.
func serviceQuery(service string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(service, dns.TypePTR)
	m.Id = 0
	m.RecursionDesired = false
	return m
}

// startupQuery is the query a node multicasts when its responder starts. It
// asks for unicast answers (a QU question, RFC 6762 §5.4): a running node
// may not multicast a record again within a second of multicasting it (§6),
// and when another node started just before this one, the running nodes'
// multicast answers to that node's query went out before this one listened.
// A unicast answer is not held back, so a node that starts next to another
// (a restart and a new node in the same second) still hears from every
// running node at once, not only at its first browse a second later.
func startupQuery(service string) *dns.Msg {
	m := serviceQuery(service)
	m.Question[0].Qclass |= unicastResponse
	return m
}

func (r *responder) send(l *link, m *dns.Msg, to *net.UDPAddr) {
	if r.closed.Load() {
		return
	}
	b, err := m.Pack()
	if err != nil {
		r.d.log.Warn("mDNS: cannot pack message", "err", err)
		return
	}
	if _, err := l.uc.WriteTo(b, nil, to); err != nil && !r.closed.Load() {
		r.d.log.Debug("mDNS: send failed", "iface", l.ifi.Name, "to", to, "err", err)
	}
}

// recv reads packets from pc until it is closed. l is the link of a unicast
// socket, nil for the multicast one (the link then comes from packet info).
func (r *responder) recv(pc *ipv4.PacketConn, fixed *link) {
	buf := make([]byte, 9000)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			if r.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.d.log.Debug("mDNS: read failed", "err", err)
			continue
		}
		l := fixed
		if l == nil {
			if cm == nil {
				continue
			}
			if l = r.byIndex[cm.IfIndex]; l == nil {
				continue // an interface we were not asked to use
			}
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		r.handle(buf[:n], ua, l, fixed != nil)
	}
}

// handle answers a query or learns from a response.
func (r *responder) handle(pkt []byte, src *net.UDPAddr, l *link, direct bool) {
	var m dns.Msg
	if err := m.Unpack(pkt); err != nil {
		r.d.log.Debug("mDNS: ignoring malformed packet", "from", src, "err", err)
		return
	}
	if m.Response {
		// RFC 6762 §6: responses not from port 5353 are ignored.
		if src.Port != mdnsPort {
			return
		}
		now := time.Now()
		for _, s := range sightings(&m, r.service) {
			r.d.seen(s, now)
		}
		return
	}
	rep, ok := r.zone.respond(&m, src.Port, l.ips)
	if !ok {
		return
	}
	if direct {
		rep.unicast = true // §5.5: a query sent to our address is answered to the sender
	}
	if rep.unicast {
		r.send(l, rep.msg, src)
		return
	}
	// §6: a multicast response is delayed 20-120 ms so that responders on the
	// link do not all answer at the same instant.
	delay := 20*time.Millisecond + rand.N(100*time.Millisecond)
	r.wg.Add(1)
	time.AfterFunc(delay, func() {
		defer r.wg.Done()
		if l.limit.filter(rep.msg, time.Now()) {
			r.send(l, rep.msg, mdnsGroupAddr)
		}
	})
}

// browse queries for pkgswarm nodes every BrowseInterval with hashicorp/mdns,
// one query per link, until ctx ends. hashicorp's Query always waits its full
// timeout, so it runs with a short one (at most 1 s). It also waits that
// timeout after ctx ends (QueryContext then only closes its sockets), so
// browse returns at once instead and leaves the queries of the round to end
// by themselves: what they found is dropped. Waiting for them held the
// goodbye, and serve's exit, back by up to a second.
func (r *responder) browse(ctx context.Context) {
	interval := r.d.cfg.BrowseInterval
	timeout := min(interval/2, time.Second)
	hlog := slog.NewLogLogger(r.d.log.Handler(), slog.LevelDebug)
	query := r.query
	if query == nil {
		query = mdns.QueryContext
	}
	failing := make([]atomic.Bool, len(r.links))
	t := time.NewTicker(interval)
	defer t.Stop()
	// done is set when browse returns; a query that returns later does
	// nothing. mu is held while a query hands on what it found, so that
	// nothing reaches Discovery.seen after browse has returned.
	var mu sync.Mutex
	done := false
	defer func() {
		mu.Lock()
		done = true
		mu.Unlock()
	}()
	for {
		var wg sync.WaitGroup
		for i, l := range r.links {
			wg.Go(func() {
				// hashicorp/mdns keeps writing to an entry after sending it
				// (more records of the same instance), so entries are read
				// only once the query has returned. Its send never blocks
				// and drops what does not fit: room for a large LAN.
				entries := make(chan *mdns.ServiceEntry, 1024)
				err := query(ctx, &mdns.QueryParam{
					Service:     ServiceType,
					Domain:      "local",
					Timeout:     timeout,
					Interface:   &l.ifi,
					Entries:     entries,
					DisableIPv6: true,
					Logger:      hlog,
				})
				close(entries)
				mu.Lock()
				defer mu.Unlock()
				if done {
					return
				}
				for e := range entries {
					r.entry(e, l)
				}
				if err != nil && ctx.Err() == nil {
					// The client needs a 224.0.0.0/4 route to listen
					// (hashicorp/mdns PR #149); ask with our own socket.
					if !failing[i].Swap(true) {
						r.d.log.Warn("mDNS: browsing with hashicorp/mdns failed; querying with the responder's socket instead",
							"iface", l.ifi.Name, "err", err)
					}
					r.send(l, serviceQuery(r.service), mdnsGroupAddr)
				} else if err == nil {
					failing[i].Store(false)
				}
			})
		}
		round := make(chan struct{})
		go func() {
			wg.Wait()
			close(round)
		}()
		select {
		case <-ctx.Done():
			return
		case <-round:
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// entry turns a hashicorp/mdns result, from a query on l, into a sighting.
// hashicorp's client listens on every interface and reports whatever it
// overhears, with no word of where it came from: an entry counts only when
// its address is on one of l's prefixes (the on-link rule of RFC 6762 §11).
func (r *responder) entry(e *mdns.ServiceEntry, l *link) {
	if !strings.HasSuffix(strings.ToLower(e.Name), "."+r.service) {
		return // the client reports any service it overhears
	}
	var ips []net.IP
	for _, ip := range []net.IP{e.AddrV4, e.AddrV6} {
		if ip != nil && l.onLink(ip) {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return
	}
	r.d.seen(sighting{instance: e.Name, host: e.Host, port: e.Port, ips: ips, txt: e.InfoFields}, time.Now())
}

func (l *link) onLink(ip net.IP) bool {
	for _, n := range l.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// multicastLimiter enforces RFC 6762 §6: a record is multicast on a link at
// most once per second (so a burst of queries from many clients costs one
// answer). The zero value is ready to use.
type multicastLimiter struct {
	mu   sync.Mutex           // protects last
	last map[string]time.Time // record key → last multicast
}

// filter removes from m the records multicast on this link within the last
// second, marks the rest as sent at now, and reports whether an answer is
// left to send.
func (ml *multicastLimiter) filter(m *dns.Msg, now time.Time) bool {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	keep := func(rrs []dns.RR) []dns.RR {
		var out []dns.RR
		for _, rr := range rrs {
			if t, ok := ml.last[rrKey(rr)]; ok && now.Sub(t) < time.Second {
				continue
			}
			out = append(out, rr)
		}
		return out
	}
	m.Answer, m.Extra = keep(m.Answer), keep(m.Extra)
	if len(m.Answer) == 0 {
		return false
	}
	ml.markLocked(m, now)
	return true
}

// mark records that every record of m was multicast at now.
func (ml *multicastLimiter) mark(m *dns.Msg, now time.Time) {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	ml.markLocked(m, now)
}

func (ml *multicastLimiter) markLocked(m *dns.Msg, now time.Time) {
	if ml.last == nil {
		ml.last = map[string]time.Time{}
	}
	for _, rr := range append(append([]dns.RR(nil), m.Answer...), m.Extra...) {
		ml.last[rrKey(rr)] = now
	}
}

// rrKey identifies a record by name, type and data (not TTL or class bits).
func rrKey(rr dns.RR) string {
	c := dns.Copy(rr)
	c.Header().Ttl = 0
	c.Header().Class = dns.ClassINET
	c.Header().Name = strings.ToLower(c.Header().Name)
	return c.String()
}
