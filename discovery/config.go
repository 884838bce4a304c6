package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config configures a Discovery. Only NodeID and (with MDNS) Port are required.
type Config struct {
	// NodeID identifies this node; it must be unique per node (callers use
	// random hex) and is announced in TXT as id=<NodeID>. Required.
	NodeID string
	// Instance is the mDNS service instance name; "" means
	// "pkgswarm-<first 8 bytes of NodeID>".
	Instance string
	// HostName is the SRV target host; "" means "<Instance>.local." (never the
	// OS host name: network namespaces and containers share it).
	HostName string
	// Port is the node's HTTP port (proxy and peer protocol). Required with MDNS.
	Port int
	// IPs are the addresses to announce; nil means, on each interface, that
	// interface's IPv4 addresses and its IPv6 addresses that are not link-local.
	IPs []net.IP
	// Interfaces are the names of the interfaces to use for mDNS; nil means
	// every interface that is up, multicast-capable and not loopback. The
	// list is resolved when Run starts.
	Interfaces []string
	// MDNS turns on announcing and browsing _pkgswarm._tcp.
	MDNS bool
	// AnnounceAptProxy also announces _apt_proxy._tcp (squid-deb-proxy-client,
	// auto-apt-proxy) and _apt-proxy._tcp (apt-cacher-ng) at Port. Needs MDNS.
	AnnounceAptProxy bool
	// TXT holds extra TXT keys (e.g. "swarm": a port). "v" and "id" are
	// reserved: TXT always includes v=1 and id=<NodeID>.
	TXT map[string]string
	// Static lists peer base URLs ("http://10.0.0.2:3142"), probed for health
	// whether or not MDNS is on.
	Static []string
	// BrowseInterval is how often mDNS is queried and unhealthy peers are
	// probed again; 0 means 2s.
	BrowseInterval time.Duration
	// ExpireAfter: an mDNS peer not seen for this long leaves the set and is
	// forgotten; a healthy peer is probed again every ExpireAfter/2. 0 means 10s.
	ExpireAfter time.Duration
	// HTTPClient is used for health checks; nil means a client with a 2s
	// timeout that ignores proxy environment variables (a node's environment
	// often points http_proxy at the node itself).
	HTTPClient *http.Client
	// Logger receives the package's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Peer is one other node.
type Peer struct {
	ID        string            // the peer's NodeID
	URL       string            // base URL, "http://ip:port" (static peers: as configured)
	Addrs     []net.IP          // addresses it announced (static peers: the URL's host, when an IP)
	Port      int               // its HTTP port
	TXT       map[string]string // its TXT keys (mDNS peers only)
	Source    string            // "mdns" or "static"
	FirstSeen time.Time         // when it was first heard of (mDNS) or first healthy (static)
	LastSeen  time.Time         // last mDNS sighting, or last successful health check for static peers
	Healthy   bool              // the last health check succeeded and fewer than failureLimit failures were reported since
	Failures  int               // failures reported (ReportFailure) or probed since the last success
	// BannedUntil is set while the peer is banned; banned peers are not in Peers().
	BannedUntil time.Time
}

// Peer sources.
const (
	SourceMDNS   = "mdns"
	SourceStatic = "static"
)

// HealthPath is the endpoint every node serves; it answers
// {"id":"<NodeID>","version":"..."} as JSON.
const HealthPath = "/_pkgswarm/v1/node"

const (
	defaultBrowseInterval = 2 * time.Second
	defaultExpireAfter    = 10 * time.Second
	defaultHealthTimeout  = 2 * time.Second
)

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("discovery: invalid config")

// withDefaults validates c and fills in what zero values mean.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.NodeID == "" {
		return bad("NodeID is empty; give each node a unique random id")
	}
	if strings.ContainsAny(c.NodeID, "= \t\r\n") || len(c.NodeID) > 200 {
		return bad("NodeID %q must be at most 200 bytes without spaces or '='", c.NodeID)
	}
	if c.MDNS && (c.Port <= 0 || c.Port > 65535) {
		return bad("Port %d is not a TCP port; mDNS needs the node's HTTP port to announce", c.Port)
	}
	if c.AnnounceAptProxy && !c.MDNS {
		return bad("AnnounceAptProxy needs MDNS")
	}
	if c.Instance == "" {
		c.Instance = "pkgswarm-" + c.NodeID[:min(8, len(c.NodeID))]
	}
	if len(c.Instance) > 63 {
		return bad("Instance %q is longer than a DNS label (63 bytes)", c.Instance)
	}
	for _, r := range c.Instance {
		if r < 0x20 || r == 0x7f {
			return bad("Instance %q contains a control character", c.Instance)
		}
	}
	if c.HostName == "" {
		c.HostName = hostLabel(c.Instance) + "." + mdnsDomain
	}
	if _, ok := dnsNameOK(c.HostName); !ok {
		return bad("HostName %q is not a DNS name", c.HostName)
	}
	if !strings.HasSuffix(c.HostName, ".") {
		c.HostName += "."
	}
	for k, v := range c.TXT {
		if k == "" || strings.Contains(k, "=") {
			return bad("TXT key %q is empty or contains '='", k)
		}
		if k == "v" || k == "id" {
			return bad("TXT key %q is reserved (always v=1 and id=NodeID)", k)
		}
		if len(k)+1+len(v) > 255 {
			return bad("TXT entry %s=%q is longer than 255 bytes", k, v)
		}
	}
	for _, s := range c.Static {
		if _, err := normalizeStatic(s); err != nil {
			return bad("%v", err)
		}
	}
	if c.BrowseInterval < 0 || c.ExpireAfter < 0 {
		return bad("BrowseInterval %v and ExpireAfter %v must not be negative", c.BrowseInterval, c.ExpireAfter)
	}
	if c.BrowseInterval == 0 {
		c.BrowseInterval = defaultBrowseInterval
	}
	if c.ExpireAfter == 0 {
		c.ExpireAfter = defaultExpireAfter
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout:   defaultHealthTimeout,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second},
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// txtRecord returns the TXT strings to announce: v=1, id=NodeID, then the
// extra keys sorted.
func (c *Config) txtRecord() []string {
	txt := []string{"v=1", "id=" + c.NodeID}
	keys := make([]string, 0, len(c.TXT))
	for k := range c.TXT {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		txt = append(txt, k+"="+c.TXT[k])
	}
	return txt
}

func (c *Config) services() []string {
	s := []string{ServiceType}
	if c.AnnounceAptProxy {
		s = append(s, AptProxyServiceType, AcngServiceType)
	}
	return s
}

// hostLabel makes a host-name label from an instance name: letters, digits
// and '-', other characters replaced by '-'.
func hostLabel(instance string) string {
	b := []byte(strings.ToLower(instance))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

// dnsNameOK reports whether name is made of labels of 1..63 bytes.
func dnsNameOK(name string) (string, bool) {
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > 253 {
		return n, false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return n, false
		}
	}
	return n, true
}

// normalizeStatic checks a static peer URL and returns it without a trailing
// slash.
func normalizeStatic(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("static peer %q is not an http(s)://host:port URL: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("static peer %q is not an http(s)://host:port URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("static peer %q must be a base URL without path or query", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// staticAddr returns the IP and port of a static peer's URL, when its host is
// an IP literal.
func staticAddr(base string) ([]net.IP, int) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, 0
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return []net.IP{ip}, port
	}
	return nil, port
}

// peerURL makes "http://ip:port".
func peerURL(ip net.IP, port int) string {
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}
