package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Server is the pkgswarm HTTP front: forward proxy, URL-prefix proxy, peer
// protocol and status endpoints on one port.
type Server struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	client  *http.Client
	origin  *originSource
	metrics *metrics
	now     func() time.Time

	hold, revalidateEvery, downloadTimeout, stall time.Duration

	flights flights
	roots   rootState
	parses  parseTracker
	fails   failureLog
	bufPool sync.Pool

	mux *http.ServeMux // internal endpoints

	ctx    context.Context // cancelled by Close; parents every download
	cancel context.CancelFunc
	wg     sync.WaitGroup // downloads and index parses in flight
}

// New returns a Server ready to serve. Close stops its downloads.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("proxy: Config.Store is required")
	}
	s := &Server{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now,
		hold: cfg.Hold, revalidateEvery: cfg.RevalidateEvery, downloadTimeout: time.Hour}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.hold <= 0 {
		s.hold = time.Second
	}
	if s.revalidateEvery <= 0 {
		s.revalidateEvery = 27 * time.Second
	}
	s.stall = cfg.StallTimeout
	if s.stall <= 0 {
		s.stall = 10 * time.Second
	}
	rt := cfg.Transport
	if rt == nil {
		rt = newTransport()
	}
	s.client = &http.Client{Transport: rt, CheckRedirect: s.checkRedirect}
	s.origin = &originSource{s: s, client: s.client}
	s.metrics = newMetrics()
	s.flights.m = map[string]*flight{}
	s.roots.init()
	s.parses.init()
	s.bufPool.New = func() any { b := make([]byte, 256<<10); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

// Close cancels downloads in flight and waits for them and for index parses.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Handle adds an internal endpoint (e.g. the peer or swarm protocol, the
// dashboard). Patterns must start with "/_pkgswarm/" or be "/".
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Registry is the Prometheus registry behind /metrics, for other tiers to
// register their collectors in.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

func (s *Server) version() string {
	if s.cfg.Version == "" {
		return "dev"
	}
	return s.cfg.Version
}

// checkRedirect follows origin redirects only to allowed ports, at most 5.
func (s *Server) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("origin %s: too many redirects", via[0].URL)
	}
	port := 80
	if req.URL.Scheme == "https" {
		port = 443
	}
	if p := req.URL.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	if !s.cfg.portAllowed(port) {
		return fmt.Errorf("origin %s redirects to %s: port %d is not allowed", via[0].URL, req.URL, port)
	}
	return nil
}

// isInternal reports whether a request path is one of pkgswarm's own
// endpoints rather than a prefix-mode proxy request.
func isInternal(p string) bool {
	return p == "/" || p == "/metrics" || p == "/favicon.ico" || strings.HasPrefix(p, "/_pkgswarm/")
}

// ServeHTTP answers one request. The hot path is straight: access check,
// parse the target, find what a verified root expects, then cache hit
// (sendfile) or the fetch pipeline.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &recorder{ResponseWriter: rw, status: http.StatusOK}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		// Only then: building the line's arguments costs on every hit.
		defer func() {
			s.log.Debug("request", "method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr,
				"status", w.status, "bytes", w.n, "source", w.Header().Get("X-Pkgswarm-Source"), "dur", time.Since(start).Round(time.Microsecond))
		}()
	}
	if !s.cfg.clientAllowed(r.RemoteAddr) {
		s.metrics.requests.WithLabelValues("denied").Inc()
		http.Error(w, "pkgswarm: clients from "+r.RemoteAddr+" are not allowed (see --allow-clients)", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodConnect {
		s.serveConnect(w, r) // hijacks the connection (through recorder.Unwrap)
		return
	}
	if !r.URL.IsAbs() && isInternal(r.URL.Path) {
		s.mux.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "pkgswarm: only GET and HEAD are proxied", http.StatusMethodNotAllowed)
		return
	}
	t, err := ParseTarget(r.RequestURI)
	if err != nil {
		s.metrics.requests.WithLabelValues("refused").Inc()
		code := http.StatusBadRequest
		if errors.Is(err, ErrNotAllowed) {
			code = http.StatusForbidden
		}
		http.Error(w, "pkgswarm: "+err.Error(), code)
		return
	}
	if !s.cfg.portAllowed(t.Port) {
		s.metrics.requests.WithLabelValues("refused").Inc()
		http.Error(w, fmt.Sprintf("pkgswarm: origin port %d is not allowed (see --allow-ports)", t.Port), http.StatusForbidden)
		return
	}
	switch t.Kind {
	case KindRoot:
		s.serveRoot(w, r, t)
	case KindVolatile, KindImmutable:
		s.serveRPMFamily(w, r, t)
	case KindIndex, KindPackage:
		exp, err := s.expectationFor(r.Context(), t)
		if err != nil {
			s.fail(w, r, t, err, 0)
			return
		}
		if exp != nil && exp.SHA256 != nil {
			s.serveVerified(w, r, t, exp)
			return
		}
		s.serveByURL(w, r, t, t.Kind == KindIndex)
	default:
		s.serveByURL(w, r, t, true)
	}
}

// expectationFor returns what the newest verified root promises about t,
// or nil when no verified root lists it. For packages it waits (bounded)
// for index parses still running for the same archive.
func (s *Server) expectationFor(ctx context.Context, t Target) (*repoindex.Expectation, error) {
	e, err := s.store.GetExpect(t.URL)
	if errors.Is(err, store.ErrNotFound) && t.Kind == KindPackage {
		if s.parses.wait(ctx, t.URL, 2*time.Minute) {
			e, err = s.store.GetExpect(t.URL)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the index for %s: %w", t.URL, err)
	}
	return &repoindex.Expectation{SHA256: e.SHA256[:], Size: e.Size, Key: repoindex.DigestKey(e.SHA256[:]), Root: e.Root}, nil
}

// serveVerified answers a file whose digest a verified root gives: from the
// store when present, else through the fetch pipeline.
func (s *Server) serveVerified(w http.ResponseWriter, r *http.Request, t Target, exp *repoindex.Expectation) {
	d := store.Digest(exp.SHA256)
	if s.store.HasBlob(d) {
		s.metrics.requests.WithLabelValues("hit").Inc()
		if t.Kind == KindIndex {
			s.maybeParseIndex(d)
		}
		s.serveBlob(w, r, t, d, entryMeta{}, "cache")
		return
	}
	s.metrics.requests.WithLabelValues("miss").Inc()
	if r.Method == http.MethodHead && exp.Size >= 0 {
		setMeta(w.Header(), t, entryMeta{})
		w.Header().Set("Content-Length", strconv.FormatInt(exp.Size, 10))
		w.Header().Set("ETag", etag(d))
		return
	}
	candidates := s.cfg.origins(t.URL)
	if t.Kind == KindIndex && !strings.Contains(t.Path, "/by-hash/") {
		// A mirror caught mid-sync serves a plain index that does not match
		// the root; its by-hash copy does (apt's own fix for "Hash Sum
		// mismatch").
		candidates = append(candidates, s.cfg.origins(urlDir(t.URL)+"/by-hash/SHA256/"+exp.Hex())...)
	}
	f, err := s.join("sha256:"+exp.Hex(), t.URL, exp, exp.Size, func(ctx context.Context, f *flight) error {
		if t.Kind == KindIndex {
			defer s.holdIndexParse(d)()
		}
		if err := s.runVerified(ctx, f, t, candidates); err != nil {
			return err
		}
		s.afterVerified(t, f.digest)
		return nil
	})
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	s.waitOrStream(w, r, t, f, entryMeta{})
}

// afterVerified runs once a verified file is committed: it marks the blob
// shareable with peers and parses indices it lists.
func (s *Server) afterVerified(t Target, d store.Digest) {
	if err := MarkVerified(s.store, d); err != nil {
		s.log.Warn("marking blob verified", "sha256", d, "err", err)
	}
	if s.cfg.OnVerified != nil {
		if bi, err := s.store.Stat(d); err == nil {
			s.cfg.OnVerified(d, bi.Size)
		}
	}
	if t.Kind == KindIndex {
		s.maybeParseIndex(d)
	}
}

// VerifiedPrefix prefixes the store metadata keys ("v:<hex>") that mark
// blobs verified against a signed root.
const VerifiedPrefix = "v:"

func verifiedKey(d store.Digest) string { return VerifiedPrefix + d.String() }

// MarkVerified records that blob d was checked against a signed root, so
// that it may be shared with peers. Only code that did that check (the
// pipeline, `pkgswarm import`) calls it.
func MarkVerified(st *store.Store, d store.Digest) error {
	return st.PutMeta(verifiedKey(d), []byte{1})
}

// IsVerified reports whether blob d was verified against a signed root and
// may be shared with peers.
func (s *Server) IsVerified(d store.Digest) bool {
	v, err := s.store.GetMeta(verifiedKey(d))
	return err == nil && len(v) == 1
}

// serveByURL answers a file no verified root vouches for, as a plain HTTP
// cache keyed by URL: revalidated (when volatile) at most once per window,
// and served stale when every origin is unreachable.
func (s *Server) serveByURL(w http.ResponseWriter, r *http.Request, t Target, volatile bool) {
	e, err := s.store.GetURL(t.URL)
	held := err == nil && s.store.HasBlob(e.Digest)
	if held && (!volatile || s.now().Sub(e.Fetched) < s.revalidateEvery || s.cfg.Offline) {
		s.metrics.requests.WithLabelValues("hit").Inc()
		s.serveBlob(w, r, t, e.Digest, entryMeta{e.ContentType, e.LastModified, e.ETag}, "cache")
		return
	}
	s.metrics.requests.WithLabelValues("miss").Inc()
	var cond *store.URLEntry
	if held {
		cond = &e
	}
	f, err := s.join("url:"+t.URL, t.URL, nil, -1, func(ctx context.Context, f *flight) error {
		return s.runURL(ctx, f, t, cond)
	})
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	s.waitOrStream(w, r, t, f, entryMeta{})
}

// runURL fetches t from its origins into f, conditionally when a copy is
// held, and records the result by URL.
func (s *Server) runURL(ctx context.Context, f *flight, t Target, held *store.URLEntry) error {
	var lastErr error
	for _, u := range s.cfg.origins(t.URL) {
		resp, err := s.originGet(ctx, u, conditional(held))
		if err != nil {
			lastErr = err
			continue
		}
		switch {
		case resp.StatusCode == http.StatusNotModified && held != nil:
			resp.Body.Close()
			held.Fetched = s.now()
			if err := s.store.PutURL(t.URL, *held); err != nil {
				return fmt.Errorf("recording revalidation of %s: %w", t.URL, err)
			}
			f.digest = held.Digest
			f.setSource("cache", entryMeta{held.ContentType, held.LastModified, held.ETag})
			return nil
		case resp.StatusCode == http.StatusOK:
			meta := entryMeta{resp.Header.Get("Content-Type"), resp.Header.Get("Last-Modified"), resp.Header.Get("ETag")}
			f.mu.Lock()
			f.meta = meta
			f.mu.Unlock()
			if resp.ContentLength >= 0 {
				f.size.Store(resp.ContentLength)
			}
			f.markReady("origin")
			n, err := s.copyInto(f, resp.Body, 0, 0, -1)
			resp.Body.Close()
			s.metrics.sourceBytes.WithLabelValues("origin").Add(float64(n))
			if err != nil {
				return fmt.Errorf("origin %s: reading body: %w", u, err)
			}
			if resp.ContentLength >= 0 && n != resp.ContentLength {
				return fmt.Errorf("origin %s: got %d of %d bytes", u, n, resp.ContentLength)
			}
			d := f.w.Sum()
			if err := f.w.Commit(d); err != nil {
				return fmt.Errorf("storing %s: %w", t.URL, err)
			}
			f.digest = d
			return s.store.PutURL(t.URL, store.URLEntry{Digest: d, Size: n, ContentType: meta.ContentType,
				LastModified: meta.LastModified, ETag: meta.ETag, Fetched: s.now()})
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
			resp.Body.Close()
			f.status = resp.StatusCode
			return fmt.Errorf("origin %s: %s: %w", u, resp.Status, ErrNotFound)
		default:
			resp.Body.Close()
			lastErr = &originStatusError{url: u, status: resp.Status, code: resp.StatusCode}
		}
	}
	if held != nil {
		s.log.Warn("origins unreachable, serving the cached copy", "url", t.URL, "err", lastErr)
		f.digest = held.Digest
		f.setSource("cache", entryMeta{held.ContentType, held.LastModified, held.ETag})
		return nil
	}
	return lastErr
}

// serveBlob answers from a stored blob with sendfile (an *os.File behind
// http.ServeContent), honouring Range, If-Range and conditionals.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, t Target, d store.Digest, meta entryMeta, source string) {
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		s.fail(w, r, t, fmt.Errorf("cached copy of %s (sha256 %s) vanished: %w; retry the request", t.URL, d, err), http.StatusServiceUnavailable)
		return
	}
	defer f.Close()
	setMeta(w.Header(), t, meta)
	w.Header().Set("ETag", etag(d))
	w.Header().Set("X-Pkgswarm-Source", source)
	var mod time.Time
	if meta.LastModified != "" {
		mod, _ = http.ParseTime(meta.LastModified)
	}
	rec, _ := w.(*recorder)
	before := int64(0)
	if rec != nil {
		before = rec.n
	}
	http.ServeContent(w, r, "", mod, f)
	if rec != nil {
		s.metrics.servedBytes.WithLabelValues(source).Add(float64(rec.n - before))
	}
}

func etag(d store.Digest) string { return `"sha256-` + d.String() + `"` }

func setMeta(h http.Header, t Target, meta entryMeta) {
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

// fail answers with a clear status and a one-line reason (DESIGN.md
// invariant 4). status, when non-zero, overrides the classification.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, t Target, err error, status int) {
	code := status
	if code == 0 {
		code = statusFor(err)
	}
	if code >= 500 {
		s.log.Warn("request failed", "url", t.URL, "status", code, "err", err)
	}
	s.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	w.Header().Set("X-Pkgswarm-Error", msg)
	http.Error(w, "pkgswarm: "+msg, code)
}

func statusFor(err error) int {
	var ve *verifyError
	var se *originStatusError
	var ne net.Error
	switch {
	case errors.As(err, &ve):
		return http.StatusBadGateway
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errOffline), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return http.StatusGatewayTimeout
	case errors.As(err, &se):
		return http.StatusBadGateway
	}
	return http.StatusBadGateway
}

// recorder remembers the status and counts bytes written. It implements
// io.ReaderFrom by delegation so that http.ServeContent of an *os.File
// still reaches sendfile.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		r.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	r.n += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
