package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/proxy/trust"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Store, Trust and Fetch are the content store, the trust resolver and
	// the fetch pipeline the front answers from. Required.
	Store *store.Store
	Trust *trust.Resolver
	Fetch *fetch.Fetcher
	// AllowClients lists the client networks served. Nil means loopback and
	// the private ranges (RFC 1918, RFC 4193, link-local).
	AllowClients []netip.Prefix
	// AllowPorts lists the origin ports requests may name (the origin client
	// enforces it again for every fetch and redirect). Nil means 80 and 443.
	AllowPorts []int
	// ConnectAllow lists the "host:port" targets a CONNECT tunnel may reach.
	// Tunnels carry TLS pkgswarm cannot read: they are passed through, never
	// cached. Nil means no tunnel is allowed.
	ConnectAllow []string
	// Hold is how long a request for a file being downloaded waits for the
	// download to finish and verify before it streams the bytes as they
	// arrive (the final byte is still held back until verification).
	// Files whose size is 4 MiB or more stream at once. Zero means 1s.
	Hold time.Duration
	// MemoryCache bounds the small blobs (64 KiB and less) answered from
	// memory instead of their files. Zero means 16 MiB; negative turns it
	// off.
	MemoryCache int64
	// NodeID and Version identify this node to peers (/_pkgswarm/v1/node).
	NodeID, Version string
	// Logger receives what the front logs itself (CONNECT errors, and the
	// per-request debug line of a hit answered by the quick lane). Nil
	// means slog.Default(). Other per-request lines are the wrapper's
	// (status).
	Logger *slog.Logger
	// QuickHit, if set, is told of every hit the quick lane answers (see
	// Readahead) with the bytes of its body: those requests never reach the
	// handler, so the wrapper that counts the others does not see them.
	QuickHit func(bytes int64)
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

// Server is pkgswarm's HTTP front: forward proxy, URL-prefix proxy and the
// peer protocol on one port.
type Server struct {
	cfg   Config
	st    *store.Store
	trust *trust.Resolver
	fetch *fetch.Fetcher
	log   *slog.Logger
	hold  time.Duration
	mem   *memCache // small blobs in memory; nil when off
	// targets memoizes the quick lane's target.Parse.
	targets targetMemo
	mux     *http.ServeMux // pkgswarm's own endpoints
	// noQuick turns the quick lane off (tests compare its answers with
	// net/http's).
	noQuick bool

	peerUploads atomic.Int64 // blob transfers to peers being served now

	frontierMu sync.Mutex               // protects frontier
	frontier   map[string]*frontierSlot // flight key and tier → peer requests waiting for its next bytes
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Trust == nil || cfg.Fetch == nil {
		return nil, errors.New("proxy: Config.Store, Config.Trust and Config.Fetch are required")
	}
	s := &Server{cfg: cfg, st: cfg.Store, trust: cfg.Trust, fetch: cfg.Fetch, log: cfg.Logger, hold: cfg.Hold, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.hold <= 0 {
		s.hold = time.Second
	}
	switch {
	case cfg.MemoryCache == 0:
		s.mem = newMemCache(defaultMemCache)
	case cfg.MemoryCache > 0:
		s.mem = newMemCache(cfg.MemoryCache)
	}
	s.peerRoutes()
	return s, nil
}

// Handle adds one of pkgswarm's own endpoints (status, dashboard, metrics,
// the swarm's metainfo). Patterns must be "/", "/metrics" or start with
// "/_pkgswarm/".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ownEndpoint reports whether the request URI uri (as the client sent it,
// before any parse) names one of pkgswarm's own endpoints.
func ownEndpoint(uri string) bool {
	return !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") && isInternal(uri)
}

// isInternal reports whether a request path is one of pkgswarm's own
// endpoints rather than a prefix-mode proxy request.
func isInternal(p string) bool {
	return p == "/" || p == "/metrics" || p == "/favicon.ico" || strings.HasPrefix(p, "/_pkgswarm/")
}

// ServeHTTP answers one request, in one straight line: access check, parse
// the target, ask trust what is expected of it, then answer from the store
// or from the pipeline's download.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer answered(r.Context())
	if !s.clientAllowed(r.RemoteAddr) {
		s.refuse(w, http.StatusForbidden, "clients from "+r.RemoteAddr+" are not allowed (see --allow-clients)")
		return
	}
	if r.Method == http.MethodConnect {
		s.serveConnect(w, r) // hijacks the connection
		return
	}
	if !r.URL.IsAbs() && isInternal(r.URL.Path) {
		s.mux.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.refuse(w, http.StatusMethodNotAllowed, "only GET and HEAD are proxied")
		return
	}
	t, err := target.Parse(r.RequestURI)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !s.portAllowed(t.Port) {
		s.refuse(w, http.StatusForbidden, fmt.Sprintf("origin port %d is not allowed (see --allow-ports)", t.Port))
		return
	}
	// A held blob can be evicted between the lookup and the open (a cache
	// smaller than what is in flight): that is a miss, asked once more.
	for try := 0; ; try++ {
		plan, err := s.trust.Resolve(r.Context(), t)
		if err != nil {
			s.fail(w, err)
			return
		}
		var served bool
		if plan.Held != nil {
			served = s.serveBlob(w, r, t, plan.Held.Digest, plan.Held.Meta, plan.Held.Source)
		} else {
			served = s.serveFetch(w, r, t, plan.Request)
		}
		if served {
			return
		}
		if try > 0 {
			s.fail(w, fmt.Errorf("the cached copy of %s vanished twice while it was being answered: %w; retry the request", t.URL, errVanished))
			return
		}
	}
}

// serveFetch answers from the store, or from the pipeline's download. It
// reports false, having written nothing, when the blob it was to answer
// with vanished (evicted meanwhile).
func (s *Server) serveFetch(w http.ResponseWriter, r *http.Request, t target.Target, req *fetch.Request) bool {
	if r.Method == http.MethodHead && req.Expect != nil && req.Expect.Size >= 0 {
		// A HEAD needs no download when the expectation gives the answer.
		if res, ok := s.fetch.Lookup(req); ok {
			return s.serveBlob(w, r, t, res.Digest, res.Meta, "cache")
		}
		setMeta(w.Header(), t, fetch.Meta{})
		w.Header().Set("Content-Length", strconv.FormatInt(req.Expect.Size, 10))
		if req.Expect.SHA256 != nil {
			w.Header().Set("ETag", etag(store.Digest(req.Expect.SHA256)))
		}
		return true
	}
	if fl := takeAhead(r.Context(), r.RequestURI); fl != nil && fl.Key() == fetch.KeyOf(req) && !failed(fl) {
		// Started ahead for this request: answer from that download, so
		// the answer says which tier served it.
		return s.answer(w, r, t, fl)
	}
	req.Line = lineOf(r.Context())
	res, err := s.fetch.Get(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return true
	}
	if res.Flight == nil {
		return s.serveBlob(w, r, t, res.Digest, res.Meta, "cache")
	}
	return s.answer(w, r, t, res.Flight)
}

// failed reports whether the download f ended in an error (a request then
// starts its own instead of reporting the failure of one started ahead).
func failed(f *fetch.Flight) bool {
	select {
	case <-f.Done():
		return f.Err() != nil
	default:
		return false
	}
}

// streamAtOnce is the size from which a download is streamed to its
// clients at once rather than held for Config.Hold. Measured with
// bench/single: holding every file cost +10 % on a cold apt run behind a
// 50 MB/s origin, streaming every file +5 %; below this size holding costs
// next to nothing and keeps the clean 502 on a verification failure.
const streamAtOnce = 4 << 20

// answer serves a client from a download: from the blob when the download
// finishes within the hold time, else by streaming the growing file. The
// stream's last byte is released only once the file verified (store
// followers hold it back); if verification fails the response is aborted,
// so no client can take a bad file for a whole one (invariant 1).
// It reports false, having written nothing, when the finished download's
// blob vanished before it could be opened.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, t target.Target, f *fetch.Flight) bool {
	d := s.hold
	if f.Size() >= streamAtOnce {
		d = 0
	}
	hold := time.NewTimer(d)
	defer hold.Stop()
	// Streaming cannot honour Range or conditionals before the file is
	// whole; such requests wait for it.
	plain := r.Header.Get("Range") == "" && r.Method != http.MethodHead
	select {
	case <-f.Done():
		return s.finish(w, r, t, f)
	case <-f.Verified():
		if plain {
			break // verified, being made durable: answer from the download now
		}
		return s.finishWhenDone(w, r, t, f)
	case <-r.Context().Done():
		return true
	case <-hold.C:
	}
	if !plain {
		return s.finishWhenDone(w, r, t, f)
	}
	select {
	case <-f.Ready():
	case <-r.Context().Done():
		return true
	}
	select {
	case <-f.Done():
		return s.finish(w, r, t, f)
	default:
	}
	if f.Size() < streamAtOnce && f.FromPeer() {
		// A peer's bytes of a file small enough to hold wait for their
		// verdict: a bad peer then costs time, and the pipeline's next
		// tier still answers this client whole. Only the origin's bytes,
		// or a file too large to hold, stream before they are verified.
		return s.finishWhenDone(w, r, t, f)
	}
	fo := f.NewReader(r.Context())
	defer fo.Close()
	setMeta(w.Header(), t, f.Meta())
	size := f.Size()
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.Header().Set("X-Pkgswarm-Source", f.Source()+"; streaming")
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, fo)
	if err == nil && size < 0 {
		// Without a Content-Length a clean end is the only signal; make
		// sure it means a verified end.
		err = f.Err()
	}
	if err != nil {
		s.log.Warn("aborting a streamed response: the download failed", "url", t.URL, "sent", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	return true
}

func (s *Server) finishWhenDone(w http.ResponseWriter, r *http.Request, t target.Target, f *fetch.Flight) bool {
	select {
	case <-f.Done():
		return s.finish(w, r, t, f)
	case <-r.Context().Done():
		return true
	}
}

// finish answers from a finished download.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, t target.Target, f *fetch.Flight) bool {
	if err := f.Err(); err != nil {
		s.fail(w, err)
		return true
	}
	return s.serveBlob(w, r, t, f.Digest(), f.Meta(), f.Source())
}

// serveBlob answers from a stored blob, honouring Range, If-Range and
// conditionals (http.ServeContent): a small blob from memory, a larger one
// from the blob file (an *os.File behind ServeContent). It reports false, having
// written nothing, when the store no longer holds the blob.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, t target.Target, d store.Digest, meta fetch.Meta, source string) bool {
	var mod time.Time
	if meta.LastModified != "" {
		mod, _ = http.ParseTime(meta.LastModified)
	}
	if data, ok := s.mem.get(d); ok {
		setBlobHeaders(w.Header(), t, d, meta, source)
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
		return true
	}
	f, size, err := s.st.OpenBlob(d)
	if err != nil {
		return false
	}
	defer f.Close()
	setBlobHeaders(w.Header(), t, d, meta, source)
	if data, ok := s.remember(d, f, size); ok {
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
		return true
	}
	// ServeContent seeks f itself (to its end for the size, then to the
	// start or the range), also after a failed read into memory.
	http.ServeContent(w, r, "", mod, f)
	return true
}

func setBlobHeaders(h http.Header, t target.Target, d store.Digest, meta fetch.Meta, source string) {
	setMeta(h, t, meta)
	h.Set("ETag", etag(d))
	h.Set("X-Pkgswarm-Source", source)
}

var errVanished = errors.New("blob vanished")

func etag(d store.Digest) string { return string(appendETag(nil, d)) }

// appendETag appends blob d's entity tag, quoted.
func appendETag(b []byte, d store.Digest) []byte {
	b = append(b, `"sha256-`...)
	b = hex.AppendEncode(b, d[:])
	return append(b, '"')
}

func setMeta(h http.Header, t target.Target, meta fetch.Meta) {
	ct := meta.ContentType
	if ct == "" {
		ct = contentType(t.Path)
	}
	h.Set("Content-Type", ct)
	if meta.LastModified != "" {
		h.Set("Last-Modified", meta.LastModified)
	}
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".deb", ".udeb":
		return "application/vnd.debian.binary-package"
	case ".rpm":
		return "application/x-rpm"
	case ".xz":
		return "application/x-xz"
	case ".gz", ".cz":
		return "application/gzip"
	case ".bz2":
		return "application/x-bzip2"
	case ".zst":
		return "application/zstd"
	case ".xml":
		return "text/xml"
	}
	switch path.Base(p) {
	case "InRelease", "Release", "MD5SUM", "media.cfg":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// fail answers with a clear status and a one-line reason (invariant 4).
func (s *Server) fail(w http.ResponseWriter, err error) {
	err = s.offlineMiss(err)
	s.refuse(w, StatusFor(err), err.Error())
}

// errOfflineMiss is a file that no cache or peer holds, asked of a node in
// offline mode: the origin, which might have it, was not asked.
var errOfflineMiss = fmt.Errorf("%w, and neither the cache nor a LAN peer or swarm holder has the file", fetch.ErrOffline)

// offlineMiss says "offline" where it is why a file was not found: in
// offline mode a miss is the origin not asked, not a file that does not
// exist, and the last tier's own words ("not found in the swarm") would
// leave the user guessing. Other errors pass unchanged.
func (s *Server) offlineMiss(err error) error {
	if !s.fetch.Offline() || errors.Is(err, fetch.ErrOffline) || !fetch.IsNotFound(err) {
		return err
	}
	return errOfflineMiss
}

// refuse answers code with a one-line reason, in the body and in the
// X-Pkgswarm-Error header (the status wrapper logs and counts it, and puts
// the reason in the status line, where apt shows it).
func (s *Server) refuse(w http.ResponseWriter, code int, reason string) {
	msg := strings.ReplaceAll(reason, "\n", " ")
	w.Header().Set("X-Pkgswarm-Error", msg)
	http.Error(w, "pkgswarm: "+msg, code)
}

// StatusFor maps an error of the request path to the HTTP status a client
// gets.
func StatusFor(err error) int {
	var se *fetch.StatusError
	switch {
	case errors.Is(err, target.ErrBadTarget):
		return http.StatusBadRequest
	case errors.Is(err, target.ErrNotAllowed), errors.Is(err, trust.ErrNotRepository), errors.Is(err, fetch.ErrForbidden):
		return http.StatusForbidden
	case fetch.IsVerify(err), errors.Is(err, trust.ErrRefused):
		return http.StatusBadGateway
	case errors.Is(err, fetch.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, errVanished):
		return http.StatusServiceUnavailable
	case fetch.IsNotFound(err):
		return http.StatusNotFound
	case fetch.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.As(err, &se):
		return http.StatusBadGateway
	}
	return http.StatusBadGateway
}

func (s *Server) clientAllowed(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	nets := s.cfg.AllowClients
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

func (s *Server) portAllowed(port int) bool {
	ports := s.cfg.AllowPorts
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

// ParsePrefixes parses a list of CIDRs or single addresses (comma-separated
// items allowed), for --allow-clients.
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
