package origin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// Sentinel errors of the egress policy. A refusal is a *ForbiddenError that
// wraps one of them; the front answers it with 403.
var (
	// ErrForbiddenAddress: the origin (or a redirect target, or a name's
	// resolved address) is an address pkgswarm does not fetch from.
	ErrForbiddenAddress = errors.New("address not allowed as an origin")
	// ErrForbiddenPort: the port is not allowed, or not written as a plain
	// decimal number.
	ErrForbiddenPort = errors.New("port not allowed for origins")
	// ErrForbiddenRedirect: a redirect to another scheme than http or https,
	// or from https down to http.
	ErrForbiddenRedirect = errors.New("redirect not allowed")
)

// ErrTooManyRedirects is wrapped by the error of a fetch that was redirected
// more than MaxRedirects times.
var ErrTooManyRedirects = errors.New("too many redirects")

// MaxRedirects is how many redirects one fetch follows.
const MaxRedirects = 5

// IsForbidden reports whether err is a refusal by the egress policy (an
// address, a port or a redirect): a request the node must not make, not an
// origin that failed.
func IsForbidden(err error) bool {
	var fe *ForbiddenError
	return errors.As(err, &fe)
}

// ForbiddenError is a refusal by the egress policy.
type ForbiddenError struct {
	// Host is the host as a URL or redirect named it (a name or a literal).
	Host string
	// Addr is the refused address; the zero Addr for port and redirect
	// refusals.
	Addr netip.Addr
	// Reason says what the address, port or redirect is, e.g. "loopback".
	Reason string
	// Err is ErrForbiddenAddress, ErrForbiddenPort or ErrForbiddenRedirect.
	Err error

	msg string
}

func (e *ForbiddenError) Error() string { return e.msg }
func (e *ForbiddenError) Unwrap() error { return e.Err }

// Is makes every refusal match fetch.ErrForbidden too, so that callers that
// know only the pipeline's errors (the front's 403) recognise it.
func (e *ForbiddenError) Is(target error) bool { return target == fetch.ErrForbidden }

// Egress is the policy on where origin requests may go. It is enforced on
// the request URL, on every redirect and on every dial (every address a name
// resolves to, at the moment it is dialed). The zero Egress is the default:
// loopback, link-local, unspecified, multicast and broadcast addresses and
// the node's own addresses are refused; private ranges are allowed.
type Egress struct {
	// AllowLoopback allows loopback addresses (127.0.0.0/8, ::1, and their
	// IPv4-mapped forms) and the node's own addresses as origins: for a
	// mirror served from this very machine, and for tests.
	AllowLoopback bool
	// AllowLinkLocal allows link-local addresses (169.254.0.0/16,
	// fe80::/10), where cloud metadata services listen.
	AllowLinkLocal bool
	// DenyPrivate refuses the private ranges (RFC 1918: 10.0.0.0/8,
	// 172.16.0.0/12, 192.168.0.0/16; RFC 4193: fc00::/7). They are allowed
	// by default because LAN mirrors are common.
	DenyPrivate bool
	// Deny lists further networks refused as origins.
	Deny []netip.Prefix
	// LocalAddrs lists the node's own addresses. Nil means the addresses of
	// every network interface (net.InterfaceAddrs). It is read when the
	// Client is made, again at a dial when the last reading is older than
	// LocalAddrsEvery, and on Client.RefreshLocalAddrs.
	LocalAddrs func() ([]netip.Addr, error)
	// LocalAddrsEvery bounds the age of the list of own addresses. Zero
	// means 30s.
	LocalAddrsEvery time.Duration
}

const (
	hintLoopback  = "pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-loopback)"
	hintLinkLocal = "pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-link-local)"
	hintNever     = "pkgswarm never fetches from unspecified, multicast or broadcast addresses"
	hintPrivate   = "origins in private ranges are refused (--deny-origin-private)"
)

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// policy is an Egress made ready: the allowed ports and the own addresses.
type policy struct {
	eg    Egress
	ports []int // allowed, sorted
	now   func() time.Time

	readOwn func() ([]netip.Addr, error)
	mu      sync.Mutex          // protects own and ownAt
	own     map[netip.Addr]bool // unmapped, without zones
	ownAt   time.Time           // when own was last read (or a reading started)
}

func newPolicy(eg Egress, ports []int, now func() time.Time) (*policy, error) {
	p := &policy{eg: eg, ports: slices.Sorted(slices.Values(ports)), now: now, readOwn: eg.LocalAddrs}
	if p.eg.LocalAddrsEvery <= 0 {
		p.eg.LocalAddrsEvery = 30 * time.Second
	}
	if p.readOwn == nil {
		p.readOwn = interfaceAddrs
	}
	for i, pre := range p.eg.Deny {
		p.eg.Deny[i] = pre.Masked()
	}
	if err := p.refreshOwn(); err != nil && !eg.AllowLoopback {
		return nil, fmt.Errorf("origin: reading this node's own addresses, which are refused as origins: %w", err)
	}
	return p, nil
}

// interfaceAddrs lists the addresses of every network interface.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na)
		}
	}
	return out, nil
}

// refreshOwn reads the node's own addresses again. On error the previous
// list is kept.
func (p *policy) refreshOwn() error {
	as, err := p.readOwn()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ownAt = p.now()
	if err != nil {
		return err
	}
	own := make(map[netip.Addr]bool, len(as))
	for _, a := range as {
		own[a.Unmap().WithZone("")] = true
	}
	p.own = own
	return nil
}

// isOwn reports whether a (unmapped, without zone) is one of the node's
// addresses, reading them again first when the list is stale.
func (p *policy) isOwn(a netip.Addr) bool {
	p.mu.Lock()
	if p.now().Sub(p.ownAt) >= p.eg.LocalAddrsEvery {
		// One caller reads again; concurrent ones use the current list
		// meanwhile rather than each reading the interfaces.
		p.ownAt = p.now()
		p.mu.Unlock()
		p.refreshOwn() // on error the previous list stays in force
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	return p.own[a]
}

// checkAddr returns a *ForbiddenError when a may not be an origin, else nil.
// host is what the URL named: the literal itself, or the name that resolved
// to a.
func (p *policy) checkAddr(host string, a netip.Addr) error {
	reason, hint := p.classify(a)
	if reason == "" {
		return nil
	}
	bare := a.Unmap().WithZone("")
	var msg string
	if lit, err := netip.ParseAddr(host); err == nil && lit.Unmap().WithZone("") == bare {
		msg = fmt.Sprintf("address %s is %s; %s", bare, reason, hint)
	} else {
		msg = fmt.Sprintf("%s resolves to %s, which is %s; %s", host, bare, reason, hint)
	}
	return &ForbiddenError{Host: host, Addr: a, Reason: reason, Err: ErrForbiddenAddress, msg: msg}
}

// classify says why a is refused ("" when it is allowed) and what the user
// can do about it. IPv4-mapped IPv6 addresses are judged as the IPv4 address
// they carry (the kernel connects to that), zones are ignored.
func (p *policy) classify(a netip.Addr) (reason, hint string) {
	if !a.IsValid() {
		return "not an IP address", hintNever
	}
	a = a.Unmap().WithZone("")
	switch {
	// 0.0.0.0/8 is "this network" (RFC 1122 3.2.1.3); Linux connects 0.0.0.0
	// to the local host.
	case a.IsUnspecified() || a.Is4() && a.As4()[0] == 0:
		return "unspecified", hintNever
	case a.IsMulticast():
		return "multicast", hintNever
	case a == broadcast4:
		return "broadcast", hintNever
	}
	if !p.eg.AllowLoopback {
		if a.IsLoopback() {
			return "loopback", hintLoopback
		}
		if p.isOwn(a) {
			return "one of this node's own addresses", hintLoopback
		}
	}
	if !p.eg.AllowLinkLocal && a.IsLinkLocalUnicast() {
		return "link-local", hintLinkLocal
	}
	if p.eg.DenyPrivate && a.IsPrivate() {
		return "private", hintPrivate
	}
	for _, pre := range p.eg.Deny {
		if pre.Contains(a) {
			return "in " + pre.String(), "origins there are refused (--deny-origin)"
		}
	}
	return "", ""
}

// parsePort parses a port strictly: decimal digits, no sign, no leading zero
// ("0080" is refused, not read as 80), 1 to 65535.
func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("port %q is not a port number from 1 to 65535 written without leading zeros", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > 65535 {
		return 0, fmt.Errorf("port %q is past 65535", s)
	}
	return n, nil
}

// checkPort parses s strictly and checks it against the allowed ports. host
// names the host for the message.
func (p *policy) checkPort(host, s string) (int, error) {
	n, err := parsePort(s)
	if err != nil {
		return 0, &ForbiddenError{Host: host, Reason: "malformed port", Err: ErrForbiddenPort, msg: err.Error()}
	}
	if !slices.Contains(p.ports, n) {
		return 0, &ForbiddenError{Host: host, Reason: "port " + s, Err: ErrForbiddenPort,
			msg: fmt.Sprintf("port %d is not allowed for origins (allowed: %s; see --allow-ports)", n, p.portList())}
	}
	return n, nil
}

func (p *policy) portList() string {
	s := make([]string, len(p.ports))
	for i, n := range p.ports {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// checkURL checks what a URL alone tells: an http or https scheme, a host,
// an allowed port, and, for a literal address, the address. Names are
// checked when they are dialed.
func (p *policy) checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: pkgswarm fetches http and https origins only", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if _, err := p.checkPort(host, port); err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(host, a)
	}
	return nil
}

// checkRedirect is the http.Client's CheckRedirect: at most MaxRedirects,
// never from https down to http, and only to URLs the policy allows.
func (p *policy) checkRedirect(req *http.Request, via []*http.Request) error {
	first, prev := via[0].URL, via[len(via)-1].URL
	if len(via) > MaxRedirects {
		return fmt.Errorf("more than %d redirects (the last to %s); configure the final mirror with --mirror: %w", MaxRedirects, req.URL, ErrTooManyRedirects)
	}
	if prev.Scheme == "https" && req.URL.Scheme == "http" {
		return &ForbiddenError{Host: req.URL.Hostname(), Reason: "https to http", Err: ErrForbiddenRedirect,
			msg: fmt.Sprintf("redirect from %s down to %s: pkgswarm never follows a redirect from https to http", prev, req.URL)}
	}
	if err := p.checkURL(req.URL); err != nil {
		var fe *ForbiddenError
		if errors.As(err, &fe) {
			msg := fmt.Sprintf("redirect to %s: %s", req.URL, fe.msg)
			return &ForbiddenError{Host: fe.Host, Addr: fe.Addr, Reason: fe.Reason, Err: fe.Err, msg: msg}
		}
		return &ForbiddenError{Host: req.URL.Hostname(), Reason: "bad target", Err: ErrForbiddenRedirect,
			msg: fmt.Sprintf("redirect from %s to %s: %v", first, req.URL, err)}
	}
	return nil
}

// fallbackDelay is how long the first address family is tried alone before
// the other one joins (RFC 8305, Happy Eyeballs; the value of net.Dialer's).
const fallbackDelay = 300 * time.Millisecond

// guardedDialer dials only addresses the policy allows. It resolves names
// itself and dials the checked literal addresses, so a name cannot resolve to
// one address when checked and another when dialed (DNS rebinding), and it
// checks every address of every dial: redirects and retries included.
type guardedDialer struct {
	pol     *policy
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	next    func(ctx context.Context, network, addr string) (net.Conn, error) // dials a literal ip:port
}

// DialContext dials address ("host:port") for the origin transport.
func (d *guardedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := d.pol.checkPort(host, portStr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = d.resolve(ctx, host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	// Only allowed addresses are dialed. A name with some refused addresses
	// (a Debian host's own name resolves to 127.0.1.1 beside its LAN
	// address) is reached through the others.
	var allowed []netip.Addr
	var refused error
	for _, a := range addrs {
		a = a.Unmap()
		if network == "tcp4" && !a.Is4() || network == "tcp6" && !a.Is6() {
			continue
		}
		if err := d.pol.checkAddr(host, a); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		allowed = append(allowed, a)
	}
	if len(allowed) == 0 {
		if refused == nil {
			refused = &net.DNSError{Err: "no address of the family " + network, Name: host, IsNotFound: true}
		}
		return nil, refused
	}
	return d.dialParallel(ctx, network, allowed, port)
}

// dialParallel dials the addresses of the first one's family in order, and
// those of the other family fallbackDelay later (or as soon as the first
// family failed); the first connection wins.
func (d *guardedDialer) dialParallel(ctx context.Context, network string, addrs []netip.Addr, port int) (net.Conn, error) {
	var primaries, fallbacks []netip.Addr
	for _, a := range addrs {
		if a.Is4() == addrs[0].Is4() {
			primaries = append(primaries, a)
		} else {
			fallbacks = append(fallbacks, a)
		}
	}
	if len(fallbacks) == 0 {
		return d.dialSerial(ctx, network, primaries, port)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c       net.Conn
		err     error
		primary bool
	}
	results := make(chan result)
	race := func(as []netip.Addr, primary bool) {
		c, err := d.dialSerial(ctx, network, as, port)
		select {
		case results <- result{c, err, primary}:
		case <-ctx.Done():
			if c != nil {
				c.Close()
			}
		}
	}
	go race(primaries, true)
	timer := time.NewTimer(fallbackDelay)
	defer timer.Stop()
	fallbackStarted, pending := false, 1
	var primaryErr, fallbackErr error
	for {
		select {
		case <-timer.C:
			if !fallbackStarted {
				fallbackStarted, pending = true, pending+1
				go race(fallbacks, false)
			}
		case r := <-results:
			pending--
			if r.err == nil {
				return r.c, nil
			}
			if r.primary {
				primaryErr = r.err
			} else {
				fallbackErr = r.err
			}
			if !fallbackStarted {
				fallbackStarted, pending = true, pending+1
				go race(fallbacks, false)
			}
			if pending == 0 {
				if primaryErr != nil {
					return nil, primaryErr
				}
				return nil, fallbackErr
			}
		}
	}
}

// dialSerial dials addrs in order until one connects, giving each its share
// of ctx's deadline (at least 2s, as net.Dialer does).
func (d *guardedDialer) dialSerial(ctx context.Context, network string, addrs []netip.Addr, port int) (net.Conn, error) {
	var first error
	for i, a := range addrs {
		if err := ctx.Err(); err != nil {
			if first == nil {
				first = err
			}
			break
		}
		dctx := ctx
		if dl, ok := ctx.Deadline(); ok {
			share := time.Until(dl) / time.Duration(len(addrs)-i)
			if share < 2*time.Second {
				share = 2 * time.Second
			}
			if share < time.Until(dl) {
				var cancel context.CancelFunc
				dctx, cancel = context.WithTimeout(ctx, share)
				defer cancel()
			}
		}
		c, err := d.next(dctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// control is the net.Dialer's Control of the default transport: it checks
// the address the socket is about to connect to, once more, below every
// name, redirect and retry.
func (p *policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %q: not an address and port", address)
	}
	if !slices.Contains(p.ports, int(ap.Port())) {
		return &ForbiddenError{Host: ap.Addr().String(), Reason: "port " + strconv.Itoa(int(ap.Port())), Err: ErrForbiddenPort,
			msg: fmt.Sprintf("port %d is not allowed for origins (allowed: %s; see --allow-ports)", ap.Port(), p.portList())}
	}
	return p.checkAddr(ap.Addr().String(), ap.Addr())
}
