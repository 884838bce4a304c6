package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// Config configures a Client. Zero values mean the documented defaults.
type Config struct {
	// AllowPorts lists the ports origins may be reached on: the request
	// URL's, every redirect's and every dial's. Nil means 80 and 443.
	AllowPorts []int
	// Mirrors maps a canonical URL prefix to alternative prefixes, tried in
	// order after it (see Client.Mirrors); ParseMirrors builds it. Nil
	// means no mirrors.
	Mirrors map[string][]string
	// Egress says which addresses origins may have. The zero Egress refuses
	// loopback, link-local and the node's own addresses (see Egress).
	Egress Egress
	// Transport, if set, is cloned and used with its TLS settings, timeouts
	// and pool sizes, but with pkgswarm's dialing: its DialContext (or a
	// default net.Dialer) is only ever called with an address the policy
	// checked, its Proxy is cleared (pkgswarm is the proxy) and compression
	// is off (bytes are verified as the origin sent them). A Transport with
	// DialTLSContext or Dial set is refused: it would dial around the
	// policy. Nil means the default transport: no proxy, no compression,
	// dials bounded to 10s and header waits to 30s, keep-alive, HTTP/2
	// allowed.
	Transport *http.Transport
	// MaxConnsPerHost bounds the connections open to one origin host at
	// once (requests beyond it wait for one), so that a node fetching in
	// parallel stays polite. Zero means DefaultMaxConnsPerHost; it applies
	// to a Transport given here too.
	MaxConnsPerHost int
	// PipelineDepth bounds the requests one connection to an http://
	// origin carries at once (HTTP/1.1 pipelining, RFC 9112 9.3.2): a GET
	// for a file of known digest and size may be sent before the answers
	// ahead of it arrived, so that a far origin costs a round trip per
	// connection, not per file. https:// origins are not pipelined (net/http's
	// transport, HTTP/2 where offered). Zero means DefaultPipelineDepth; 1 turns pipelining off (one
	// request per connection at a time, net/http's transport alone).
	// Pipelining is off as well for a Transport with DisableKeepAlives.
	PipelineDepth int
	// Resolve returns the addresses of a host name. Nil means the system
	// resolver (net.DefaultResolver.LookupNetIP). Every address it returns
	// is checked against Egress before it is dialed.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Version goes into the User-Agent, "pkgswarm/<Version>". Empty means
	// "dev".
	Version string
	// Offline, when true, makes every Fetch fail with fetch.ErrOffline
	// without contacting anything.
	Offline bool
	// Now returns the current time (for the age of the list of own
	// addresses). Nil means time.Now.
	Now func() time.Time
}

// Client is the origin tier: it implements fetch.Source over HTTP(S). It is
// safe for concurrent use.
type Client struct {
	cfg     Config
	pol     *policy
	dialer  *guardedDialer
	tr      *http.Transport
	pipe    *pipeTransport // nil when pipelining is off
	hc      *http.Client
	ua      string
	mirrors []mirror // longest prefix first
}

var _ fetch.Source = (*Client)(nil)

type mirror struct {
	prefix string
	alts   []string
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	ports := cfg.AllowPorts
	if ports == nil {
		ports = []int{80, 443}
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("origin: allowed port %d is not from 1 to 65535", p)
		}
	}
	depth := cfg.PipelineDepth
	switch {
	case depth < 0:
		return nil, fmt.Errorf("origin: pipeline depth %d is negative (1 turns pipelining off)", depth)
	case depth == 0:
		depth = DefaultPipelineDepth
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	eg := cfg.Egress
	eg.Deny = slices.Clone(eg.Deny)
	pol, err := newPolicy(eg, slices.Clone(ports), now)
	if err != nil {
		return nil, err
	}
	resolve := cfg.Resolve
	if resolve == nil {
		resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	d := &guardedDialer{pol: pol, resolve: resolve}
	var tr *http.Transport
	if cfg.Transport == nil {
		tr = defaultTransport()
		d.next = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: pol.control}).DialContext
	} else {
		if cfg.Transport.DialTLSContext != nil || cfg.Transport.DialTLS != nil || cfg.Transport.Dial != nil {
			return nil, errors.New("origin: Config.Transport dials by itself (DialTLSContext, DialTLS or Dial): the egress policy could not check its addresses; set DialContext instead")
		}
		tr = cfg.Transport.Clone()
		d.next = tr.DialContext
		if d.next == nil {
			d.next = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: pol.control}).DialContext
		}
		tr.Proxy = nil
		tr.DisableCompression = true
	}
	tr.DialContext = d.DialContext
	tr.MaxConnsPerHost = cfg.MaxConnsPerHost
	if tr.MaxConnsPerHost <= 0 {
		tr.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	version := cfg.Version
	if version == "" {
		version = "dev"
	}
	c := &Client{cfg: cfg, pol: pol, dialer: d, tr: tr, ua: "pkgswarm/" + version}
	var rt http.RoundTripper = tr
	if depth > 1 && !tr.DisableKeepAlives {
		c.pipe = newPipeTransport(d.DialContext, tr, tr.MaxConnsPerHost, depth)
		rt = c.pipe
	}
	c.hc = &http.Client{Transport: rt, CheckRedirect: pol.checkRedirect}
	for prefix, alts := range cfg.Mirrors {
		c.mirrors = append(c.mirrors, mirror{prefix: prefix, alts: slices.Clone(alts)})
	}
	slices.SortFunc(c.mirrors, func(a, b mirror) int { return len(b.prefix) - len(a.prefix) })
	return c, nil
}

// DefaultMaxConnsPerHost is how many connections a node opens to one origin
// host at most: a few, as a browser or aria2c would, kept alive and reused
// (HTTP/2, where the origin offers it, multiplexes them on one).
const DefaultMaxConnsPerHost = 4

// defaultTransport is the origin transport when none is configured: no proxy
// from the environment (pkgswarm is the proxy), bounded dials and header
// waits, and enough idle connections to keep a mirror's connection warm.
func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		// A custom DialContext turns HTTP/2 off unless forced.
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// net/http's client allows 10 MiB of answer headers; its server
		// allows 1 MiB of request headers, more than any origin sends.
		MaxResponseHeaderBytes: defaultMaxHeaderBytes,
		// Bytes are verified and stored as the origin sent them; asking for
		// gzip would make Go decode transparently and break digests.
		DisableCompression: true,
	}
}

// Name labels the tier.
func (c *Client) Name() string { return "origin" }

// Mirrors lists the URLs to try for a canonical URL: the URL itself, then
// the same path under each alternative of the longest configured prefix it
// is under. It fits fetch.Config.Mirrors.
func (c *Client) Mirrors(u string) []string {
	out := []string{u}
	for _, m := range c.mirrors {
		if len(u) > len(m.prefix) && u[:len(m.prefix)] == m.prefix && u[len(m.prefix)] == '/' {
			for _, alt := range m.alts {
				out = append(out, alt+u[len(m.prefix):])
			}
			break
		}
	}
	return out
}

// DialContext dials address ("host:port") as origin requests do: the port
// and every address the host resolves to are checked against the policy, and
// only allowed addresses are dialed. For other code that connects to origins
// on a client's behalf (e.g. CONNECT tunnels).
func (c *Client) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return c.dialer.DialContext(ctx, network, address)
}

// RefreshLocalAddrs reads the node's own addresses again now (they are also
// read again at a dial when the list is older than Egress.LocalAddrsEvery).
// On error the previous list stays in force.
func (c *Client) RefreshLocalAddrs() error { return c.pol.refreshOwn() }

// CloseIdleConnections closes the idle connections to origins.
func (c *Client) CloseIdleConnections() {
	if c.pipe != nil {
		c.pipe.CloseIdleConnections()
		return
	}
	c.tr.CloseIdleConnections()
}

// Fetch GETs a.URL: from a.Offset with "Range: bytes=OFFSET-" when it is
// positive, conditionally on a.Conditional (If-None-Match, If-Modified-Since)
// when the offset is zero. It returns the body of a 200 (Start 0) or of a 206
// (Start from its Content-Range, which must start at or before a.Offset), an
// error wrapping fetch.ErrNotModified for a 304, fetch.ErrNotFound for a 404
// or 410, a *fetch.StatusError for any other status, fetch.ErrOffline in
// offline mode, and a *ForbiddenError (see IsForbidden) when the URL, a
// redirect or a resolved address is refused by the policy. The caller
// closes the body.
func (c *Client) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	if c.cfg.Offline {
		return nil, fmt.Errorf("origin %s: %w", a.URL, fetch.ErrOffline)
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return nil, fmt.Errorf("origin %q: not a URL: %w", a.URL, err)
	}
	if err := c.pol.checkURL(u); err != nil {
		return nil, fmt.Errorf("origin %s: %w", a.URL, err)
	}
	if r := a.Request; r != nil && r.Expect != nil && r.Expect.SHA256 != nil && r.Expect.Size >= 0 {
		// The pool may pipeline this request: its answer can be told
		// from another by its size (and the pipeline checks its digest).
		ctx = context.WithValue(ctx, expectKey{}, r.Expect.Size)
		if r.Line.Conn != 0 {
			ctx = context.WithValue(ctx, lineKey{}, r.Line)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", a.URL, err)
	}
	req.Header.Set("User-Agent", c.ua)
	if a.Offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(a.Offset, 10)+"-")
	} else if h := a.Conditional; h != nil {
		// Offset zero only: a conditional range request would need If-Range
		// semantics (RFC 9110 13.1.5), and the pipeline revalidates whole
		// files.
		if h.ETag != "" {
			req.Header.Set("If-None-Match", h.ETag)
		}
		if h.LastModified != "" {
			req.Header.Set("If-Modified-Since", h.LastModified)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, requestError(a.URL, err)
	}
	return c.interpret(a, resp)
}

// interpret is the one reading of an origin's answer.
func (c *Client) interpret(a *fetch.Attempt, resp *http.Response) (*fetch.Body, error) {
	meta := fetch.Meta{
		ContentType:  resp.Header.Get("Content-Type"),
		LastModified: resp.Header.Get("Last-Modified"),
		ETag:         resp.Header.Get("Etag"),
	}
	switch resp.StatusCode {
	case http.StatusOK:
		size := resp.ContentLength
		if size < 0 {
			size = -1
		}
		return &fetch.Body{ReadCloser: resp.Body, Start: 0, Size: size, Meta: meta, Peer: a.URL}, nil
	case http.StatusPartialContent:
		cr, err := c.checkRange(a, resp)
		if err != nil {
			discardBody(resp)
			return nil, err
		}
		body := &rangeBody{ReadCloser: resp.Body, url: a.URL, left: cr.Last - cr.First + 1, cr: cr}
		return &fetch.Body{ReadCloser: body, Start: cr.First, Size: cr.Total, Meta: meta, Peer: a.URL}, nil
	case http.StatusNotModified:
		discardBody(resp)
		return nil, fmt.Errorf("origin %s: %s: %w", a.URL, resp.Status, fetch.ErrNotModified)
	case http.StatusNotFound, http.StatusGone:
		discardBody(resp)
		return nil, fmt.Errorf("origin %s: %s: %w", a.URL, resp.Status, fetch.ErrNotFound)
	default:
		discardBody(resp)
		return nil, &fetch.StatusError{URL: a.URL, Status: resp.Status, Code: resp.StatusCode}
	}
}

// checkRange reads the Content-Range of a 206 and checks it against what was
// asked.
func (c *Client) checkRange(a *fetch.Attempt, resp *http.Response) (fetch.ContentRange, error) {
	vals := resp.Header.Values("Content-Range")
	if len(vals) != 1 {
		return fetch.ContentRange{}, fmt.Errorf("origin %s: answered 206 with %d Content-Range headers (a multipart answer to a single range?); try another mirror (--mirror)", a.URL, len(vals))
	}
	cr, err := fetch.ParseContentRange(vals[0])
	if err != nil {
		return fetch.ContentRange{}, fmt.Errorf("origin %s: answered 206 with an unusable Content-Range %q: %v; try another mirror (--mirror)", a.URL, vals[0], err)
	}
	if cr.First > a.Offset {
		return fetch.ContentRange{}, fmt.Errorf("origin %s: asked for the bytes from %d, answered the range %d-%d: bytes %d-%d would be missing; try another mirror (--mirror)",
			a.URL, a.Offset, cr.First, cr.Last, a.Offset, cr.First-1)
	}
	if n := cr.Last - cr.First + 1; resp.ContentLength >= 0 && resp.ContentLength != n {
		return fetch.ContentRange{}, fmt.Errorf("origin %s: answered 206 with Content-Range %q (%d bytes) and Content-Length %d; try another mirror (--mirror)", a.URL, vals[0], n, resp.ContentLength)
	}
	return cr, nil
}

// discardBody reads a little of an unused body, so that the connection can
// be reused, and closes it.
func discardBody(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// requestError is the error of a request that got no answer. A refusal by
// the policy (at a redirect or a dial) or too many redirects is returned as
// itself; anything else keeps the *url.Error (a net.Error, so that
// fetch.IsUnavailable holds) without repeating its URL in the text.
func requestError(u string, err error) error {
	var fe *ForbiddenError
	if errors.As(err, &fe) {
		return fmt.Errorf("origin %s: %w", u, fe)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		return fmt.Errorf("origin %s: %w", u, err)
	}
	if errors.Is(err, ErrTooManyRedirects) {
		return fmt.Errorf("origin %s: %w", u, ue.Err)
	}
	return &unreachableError{url: u, err: ue}
}

type unreachableError struct {
	url string
	err *url.Error
}

func (e *unreachableError) Error() string { return "origin " + e.url + ": " + e.err.Err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }
