package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Store is the content store. Required.
	Store *store.Store
	// Keyring holds the keys that make an apt root trusted. Nil means an
	// empty keyring: every repository is served as a plain cache.
	Keyring *apt.Keyring
	// AllowClients lists the client networks served. Nil means loopback and
	// the private ranges (RFC 1918, RFC 4193, link-local).
	AllowClients []netip.Prefix
	// AllowPorts lists the origin ports pkgswarm fetches from. Nil means 80
	// and 443.
	AllowPorts []int
	// ConnectAllow lists the "host:port" targets a CONNECT tunnel may reach.
	// Tunnels carry TLS pkgswarm cannot read: they are passed through, never
	// cached. Nil means no tunnel is allowed.
	ConnectAllow []string
	// Mirrors maps a URL prefix to alternative prefixes tried in order when
	// the first fails or sends bad bytes. The canonical (first) prefix keys
	// the cache.
	Mirrors map[string][]string
	// RPM configures urpmi and rpm-md (dnf) verification.
	RPM RPMConfig
	// Offline, when true, never contacts an origin: requests are answered
	// from the cache and peers only.
	Offline bool
	// Peers are the tiers asked before the origin, in order (LAN, swarm).
	// They are only ever asked for files a verified root lists.
	Peers []Source
	// Transport fetches from origins. Nil means a transport with sane
	// timeouts that ignores proxy environment variables.
	Transport http.RoundTripper
	// RevalidateEvery bounds conditional GETs for roots and other volatile
	// files. Zero means 27s, as apt-cacher-ng does.
	RevalidateEvery time.Duration
	// Hold is how long a request for a file being downloaded waits for the
	// download to finish and verify before it starts streaming unverified
	// bytes (which it aborts if verification then fails). Files whose signed
	// size is 4 MiB or more stream at once. Zero means 1s.
	Hold time.Duration
	// StallTimeout cuts a source that sends no byte for this long; the next
	// source resumes where it stopped. Zero means 10s (apt itself gives up
	// on a silent connection after 30s).
	StallTimeout time.Duration
	// NodeID identifies this node to peers (GET /_pkgswarm/v1/node).
	NodeID string
	// Version is reported by /_pkgswarm/status and the node endpoint.
	Version string
	// Logger receives one debug line per request and one warn line per
	// failure. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now (tests move it).
	Now func() time.Time
	// OnVerified, if set, is called (in the downloading goroutine; it must
	// not block) once for every blob committed after verification against
	// a signed root: the swarm seeds it.
	OnVerified func(d store.Digest, size int64)
	// PeerList, if set, lists peers for the status page and dashboard.
	PeerList func() any
	// Extra, if set, adds sections to /_pkgswarm/status.
	Extra func() map[string]any
}

// DefaultAllowClients are the networks served when none are configured.
var DefaultAllowClients = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// ParsePrefixes parses a list of CIDRs or single addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !strings.Contains(s, "/") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fmt.Errorf("allowed client %q: not an address or CIDR: %v", s, err)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("allowed client %q: %v", s, err)
			}
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

// ParseMirrors parses "PREFIX=ALT1,ALT2" entries.
func ParseMirrors(list []string) (map[string][]string, error) {
	m := map[string][]string{}
	for _, e := range list {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("mirror %q: want PREFIX=ALT[,ALT...], e.g. http://deb.example.org/debian=https://mirror.example.net/debian", e)
		}
		prefix, err := canonicalPrefix(k)
		if err != nil {
			return nil, fmt.Errorf("mirror %q: %v", e, err)
		}
		for _, alt := range strings.Split(v, ",") {
			a, err := canonicalPrefix(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("mirror %q: %v", e, err)
			}
			m[prefix] = append(m[prefix], a)
		}
	}
	return m, nil
}

func canonicalPrefix(s string) (string, error) {
	s = strings.TrimRight(s, "/")
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	// Reuse the request canonicalisation on a dummy file under the prefix.
	t, err := ParseTarget(s + "/dists/x/InRelease")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(t.URL, "/dists/x/InRelease"), nil
}

func (c *Config) clientAllowed(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	nets := c.AllowClients
	if nets == nil {
		nets = DefaultAllowClients
	}
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *Config) portAllowed(port int) bool {
	ports := c.AllowPorts
	if ports == nil {
		ports = []int{80, 443}
	}
	for _, p := range ports {
		if p == port {
			return true
		}
	}
	return false
}

// origins lists the URLs to try for a canonical URL: itself, then mirrors.
func (c *Config) origins(u string) []string {
	out := []string{u}
	best := ""
	for prefix := range c.Mirrors {
		if (strings.HasPrefix(u, prefix+"/")) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best != "" {
		for _, alt := range c.Mirrors[best] {
			out = append(out, alt+strings.TrimPrefix(u, best))
		}
	}
	return out
}
