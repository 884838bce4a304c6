package status

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// Metrics are the counters behind /metrics and the status page. Each Metrics
// has its own registry, so several nodes in one process (tests, labs) never
// collide. They are fed by wrappers, never by calls inside the request path:
// Handler wraps the front, Source wraps a tier, and Metrics is the
// pipeline's fetch.Observer.
type Metrics struct {
	reg      *prometheus.Registry
	failures *FailureLog

	servedBytes    *prometheus.CounterVec // bytes sent to clients, by source
	fetchedBytes   *prometheus.CounterVec // bytes received into the store, by source
	originBytes    prometheus.Counter
	originRequests prometheus.Counter
	originErrors   prometheus.Counter
	requests       *prometheus.CounterVec // by result: hit, miss, denied, refused, <status>
	verifyFailures *prometheus.CounterVec // by source
	rootsRefused   prometheus.Counter
	peerBytes      prometheus.Counter // bytes served to LAN peers
	// hits and cacheBytes are requests{result="hit"} and
	// servedBytes{source="cache"}, resolved once: QuickHit runs per hit.
	hits, cacheBytes prometheus.Counter
}

// NewMetrics returns Metrics with their own registry, recording verification
// failures in failures (nil: a new log).
func NewMetrics(failures *FailureLog) *Metrics {
	if failures == nil {
		failures = &FailureLog{}
	}
	m := &Metrics{reg: prometheus.NewRegistry(), failures: failures}
	m.servedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgswarm_served_bytes_total",
		Help: "Bytes sent to clients, by the source that provided them (cache, lan, swarm, origin).",
	}, []string{"source"})
	m.fetchedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgswarm_fetched_bytes_total",
		Help: "Bytes received from each source into the store (before verification).",
	}, []string{"source"})
	m.originBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_origin_bytes_total",
		Help: "Bytes read from origin mirrors.",
	})
	m.originRequests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_origin_requests_total",
		Help: "HTTP requests sent to origin mirrors.",
	})
	m.originErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_origin_errors_total",
		Help: "Origin requests that failed before a response (network errors, refused addresses).",
	})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgswarm_requests_total",
		Help: "Proxy requests by result: hit, miss, denied, refused, or the error status sent.",
	}, []string{"result"})
	m.verifyFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgswarm_verify_failures_total",
		Help: "Files that failed verification against signed metadata, by the source that sent them.",
	}, []string{"source"})
	m.rootsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_roots_refused_total",
		Help: "Signed roots (and urpmi pubkeys) refused: bad signature, expired, older than the one held, or not bound to the repository.",
	})
	m.peerBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_peer_served_bytes_total",
		Help: "Bytes of verified blobs served to LAN peers.",
	})
	m.reg.MustRegister(m.peerBytes, m.servedBytes, m.fetchedBytes, m.originBytes, m.originRequests, m.originErrors,
		m.requests, m.verifyFailures, m.rootsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, src := range []string{"cache", "lan", "swarm", "origin"} {
		m.servedBytes.WithLabelValues(src)
		m.verifyFailures.WithLabelValues(src)
	}
	for _, r := range []string{"hit", "miss"} {
		m.requests.WithLabelValues(r)
	}
	m.hits, m.cacheBytes = m.requests.WithLabelValues("hit"), m.servedBytes.WithLabelValues("cache")
	return m
}

// Registry is the Prometheus registry behind /metrics, for other tiers (the
// swarm) to register their collectors in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Failures is the log of recent verification failures.
func (m *Metrics) Failures() *FailureLog { return m.failures }

var _ fetch.Observer = (*Metrics)(nil)

// Fetched implements fetch.Observer.
func (m *Metrics) Fetched(source string, n int64) {
	m.fetchedBytes.WithLabelValues(source).Add(float64(n))
}

// VerifyFailed implements fetch.Observer.
func (m *Metrics) VerifyFailed(e *fetch.VerifyError) {
	for _, c := range e.Sources {
		m.verifyFailures.WithLabelValues(c.Source).Inc()
	}
	srcs := make([]string, len(e.Sources))
	for i, c := range e.Sources {
		srcs[i] = c.String()
	}
	m.failures.Record(e.URL, e.SHA256, strings.Join(srcs, ","), e.Err.Error())
}

// SourceFailed implements fetch.Observer.
func (m *Metrics) SourceFailed(source, url string, err error) {}

// QuickHit counts a hit the front's quick lane answered with n body bytes
// (proxy.Config.QuickHit): a request the Handler wrapper never sees, counted
// as it would count a hit from the cache.
func (m *Metrics) QuickHit(n int64) {
	m.hits.Inc()
	m.cacheBytes.Add(float64(n))
}

// Refused records a refused root or pubkey, or a failed index parse (the
// trust package's Config.OnRefused).
func (m *Metrics) Refused(url string, err error) {
	m.rootsRefused.Inc()
	m.verifyFailures.WithLabelValues("origin").Inc()
	m.failures.Record(url, "", "origin", err.Error())
}

// Origin wraps the origin tier: it counts requests, network errors and the
// bytes read from origins.
func (m *Metrics) Origin(src fetch.Source) fetch.Source { return &countedOrigin{src: src, m: m} }

type countedOrigin struct {
	src fetch.Source
	m   *Metrics
}

func (o *countedOrigin) Name() string { return o.src.Name() }

func (o *countedOrigin) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	o.m.originRequests.Inc()
	b, err := o.src.Fetch(ctx, a)
	if err != nil {
		if fetch.IsUnavailable(err) || fetch.IsForbidden(err) {
			o.m.originErrors.Inc()
		}
		return nil, err
	}
	b.ReadCloser = &countingBody{ReadCloser: b.ReadCloser, c: o.m.originBytes}
	return b, nil
}

// Penalize passes penalties through to the wrapped source.
func (o *countedOrigin) Penalize(a *fetch.Attempt, peer string, reason error) {
	if p, ok := o.src.(fetch.Penalizer); ok {
		p.Penalize(a, peer, reason)
	}
}

type countingBody struct {
	io.ReadCloser
	c prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.Add(float64(n))
	}
	return n, err
}

// Handler wraps the front: per request it counts the result (hit, miss,
// denied, refused, or the error status), the bytes served by source (from
// the X-Pkgswarm-Source header the front sets) and the bytes served to peers,
// logs one debug line (not for polls: health checks, the dashboard,
// scrapes), and a warn line for each failure (status 500 and up),
// denial and refusal, with the X-Pkgswarm-Error reason, at most one line a
// minute per kind (the next says how many were left out).
//
// An error answer to a proxy request (a status of 400 and up with an
// X-Pkgswarm-Error reason) carries that reason in its status line too, as
// "404 Not Found: <reason>": apt prints the status line and nothing else
// of an error. net/http writes only the standard reason phrase, so such an
// answer is written on the hijacked connection, which is then closed
// (Connection: close; a client sends its next request on a new
// connection). Successful answers, streaming and sendfile are untouched.
func (m *Metrics) Handler(next http.Handler, log *slog.Logger) http.Handler {
	lim := &logLimiter{now: m.clock, every: time.Minute}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &recorder{ResponseWriter: rw, status: http.StatusOK, ownErrors: ownsErrorLine(r)}
		defer func() {
			w.finishError(r)
			m.count(w, r)
			if kind := logKind(w.status); kind != "" {
				if ok, skipped := lim.allow(kind); ok {
					args := []any{"method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr,
						"status", w.status, "err", w.Header().Get("X-Pkgswarm-Error")}
					if skipped > 0 {
						args = append(args, "similar_not_logged", skipped)
					}
					log.Warn("request "+kind, args...)
				}
			}
			if log.Enabled(r.Context(), slog.LevelDebug) && !isPoll(r) {
				// Only then: building the line's arguments costs on every hit.
				log.Debug("request", "method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr,
					"status", w.status, "bytes", w.n, "source", w.Header().Get("X-Pkgswarm-Source"), "dur", time.Since(start).Round(time.Microsecond))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// isPoll reports whether r is a poll that repeats every few seconds on an
// idle node (a peer's health check, the dashboard, a Prometheus scrape):
// not logged at debug, which is one line per proxy request or peer
// transfer.
func isPoll(r *http.Request) bool {
	if r.URL.IsAbs() {
		return false
	}
	p := r.URL.Path
	return p == "/" || p == "/metrics" || p == "/favicon.ico" || p == "/_pkgswarm/v1/node" ||
		p == "/_pkgswarm/status" || strings.HasPrefix(p, "/_pkgswarm/ui/")
}

// logKind is what a status is logged as: "failed" (500 and up), "denied"
// or "refused" (403, 400, 405), or "" (not logged beyond debug).
func logKind(status int) string {
	switch {
	case status >= 500:
		return "failed"
	case status == http.StatusForbidden:
		return "denied or refused"
	case status == http.StatusBadRequest || status == http.StatusMethodNotAllowed:
		return "refused"
	}
	return ""
}

// logLimiter lets through one line per kind per interval and counts the
// rest. A client that repeats a refused request cannot flood the log.
type logLimiter struct {
	now   func() time.Time
	every time.Duration

	mu   sync.Mutex // protects last
	last map[string]*limitEntry
}

type limitEntry struct {
	at      time.Time
	skipped int
}

// allow reports whether a line of kind may be logged now, and how many
// were held back since the last one.
func (l *logLimiter) allow(kind string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]*limitEntry{}
	}
	e := l.last[kind]
	if e == nil {
		l.last[kind] = &limitEntry{at: now}
		return true, 0
	}
	if now.Sub(e.at) < l.every {
		e.skipped++
		return false, 0
	}
	skipped := e.skipped
	e.at, e.skipped = now, 0
	return true, skipped
}

// ownsErrorLine reports whether an error answer to r gets its reason in
// the status line: proxy requests (and CONNECT) over HTTP/1.x, not
// pkgswarm's own endpoints, whose clients (peers, the dashboard) read the
// header and keep their connections.
func ownsErrorLine(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if r.Method == http.MethodConnect || r.URL.IsAbs() {
		return true
	}
	p := r.URL.Path
	return !(p == "/" || p == "/metrics" || p == "/favicon.ico" || strings.HasPrefix(p, "/_pkgswarm/"))
}

func (m *Metrics) count(w *recorder, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_pkgswarm/v1/blob/") || strings.HasPrefix(r.URL.Path, "/_pkgswarm/v1/rpm/") {
		m.peerBytes.Add(float64(w.n))
		return
	}
	if !r.URL.IsAbs() && (r.URL.Path == "/" || r.URL.Path == "/metrics" || strings.HasPrefix(r.URL.Path, "/_pkgswarm/")) {
		return
	}
	source, _, _ := strings.Cut(w.Header().Get("X-Pkgswarm-Source"), ";")
	switch {
	case r.Method == http.MethodConnect && w.status == http.StatusOK:
		m.requests.WithLabelValues("tunnel").Inc()
	case w.status == http.StatusForbidden && strings.Contains(w.Header().Get("X-Pkgswarm-Error"), "--allow-clients"):
		m.requests.WithLabelValues("denied").Inc()
	case w.status == http.StatusForbidden || w.status == http.StatusBadRequest || w.status == http.StatusMethodNotAllowed:
		m.requests.WithLabelValues("refused").Inc()
	case w.status >= 400:
		m.requests.WithLabelValues(strconv.Itoa(w.status)).Inc()
	case source == "cache":
		m.requests.WithLabelValues("hit").Inc()
	default:
		m.requests.WithLabelValues("miss").Inc()
	}
	if source != "" && w.status < 400 {
		m.servedBytes.WithLabelValues(strings.TrimSpace(source)).Add(float64(w.n))
	}
}

// recorder remembers the status and counts bytes written. It implements
// io.ReaderFrom by delegation so that http.ServeContent of an *os.File still
// reaches sendfile, and Unwrap so that CONNECT can hijack the connection.
// With ownErrors, an error answer that carries X-Pkgswarm-Error is held
// (its body is a line or two) and written by finishError with the reason
// in its status line.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64

	ownErrors bool
	held      bool         // an error answer is being held
	body      bytes.Buffer // its body
	wrote     bool         // WriteHeader was called
}

// maxHeldBody bounds the body of an error answer held for finishError:
// error bodies are one line; a larger one is passed through as it is.
const maxHeldBody = 64 << 10

func (r *recorder) WriteHeader(code int) {
	if r.wrote {
		r.ResponseWriter.WriteHeader(code) // net/http logs the superfluous call
		return
	}
	r.wrote = true
	r.status = code
	if r.ownErrors && code >= 400 && r.Header().Get("X-Pkgswarm-Error") != "" {
		r.held = true
		return
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if r.held {
		if r.body.Len()+len(p) <= maxHeldBody {
			r.n += int64(len(p))
			return r.body.Write(p)
		}
		r.release() // not an error line: pass it through
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if r.held {
		return io.Copy(struct{ io.Writer }{r}, src)
	}
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
	if r.held {
		return // written whole by finishError
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// release writes a held answer the ordinary way (net/http's reason
// phrase).
func (r *recorder) release() {
	r.held = false
	r.ResponseWriter.WriteHeader(r.status)
	if r.body.Len() > 0 {
		r.ResponseWriter.Write(r.body.Bytes())
		r.body.Reset()
	}
}

// finishError writes a held error answer on the hijacked connection, with
// the X-Pkgswarm-Error reason in the status line, and closes the
// connection; where the connection cannot be taken over it is written the
// ordinary way.
func (r *recorder) finishError(req *http.Request) {
	if !r.held {
		return
	}
	r.held = false
	conn, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		r.ResponseWriter.WriteHeader(r.status)
		r.ResponseWriter.Write(r.body.Bytes())
		return
	}
	h := r.Header().Clone()
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Trailer"} {
		h.Del(k)
	}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	h.Set("Connection", "close")
	brw.WriteString("HTTP/1.1 " + StatusLine(r.status, h.Get("X-Pkgswarm-Error")) + "\r\n")
	h.Write(brw)
	brw.WriteString("\r\n")
	if req.Method != http.MethodHead {
		brw.Write(r.body.Bytes())
	}
	brw.Flush()
	// Close gently (RFC 9112 §9.6): closing a socket with unread requests
	// in it (a pipelining client) sends a reset that can discard the answer
	// before the client read it. So the write side is closed first where it
	// can be, and what the client still sends is read and dropped until it
	// closes (it knows the answer's end from Content-Length), for a second
	// at most, as net/http does for its own closes.
	if tc, ok := conn.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
	go func() {
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
	}()
}

// maxReasonLen bounds the reason phrase: apt reads a status line into a
// 360-byte buffer (its http.cc: sscanf "HTTP/%3u.%3u %3u%359[^\n]").
const maxReasonLen = 300

// StatusLine is the status code and reason phrase of an error answer:
// "404 Not Found: <reason>", the reason made one line of printable ASCII
// (RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text )) and
// bounded.
func StatusLine(code int, reason string) string {
	text := http.StatusText(code)
	if text == "" {
		text = "Status " + strconv.Itoa(code)
	}
	var b strings.Builder
	for _, c := range []byte(strings.TrimPrefix(reason, "pkgswarm: ")) {
		if c < 0x20 || c > 0x7e {
			c = ' '
		}
		b.WriteByte(c)
	}
	phrase := strings.Join(strings.Fields(b.String()), " ")
	if phrase == "" {
		return strconv.Itoa(code) + " " + text
	}
	line := text + ": " + phrase
	if len(line) > maxReasonLen {
		line = line[:maxReasonLen-3] + "..."
	}
	return strconv.Itoa(code) + " " + line
}

// clock is the time of the failure log's clock (the node's Config.Now in
// tests), so that the log limiter runs on the same time.
func (m *Metrics) clock() time.Time {
	if m.failures.Now != nil {
		return m.failures.Now()
	}
	return time.Now()
}

// served reads the served-bytes counters by source (the dashboard reads
// them every second).
func (m *Metrics) served() map[string]int64 {
	out := map[string]int64{}
	mfs, _ := m.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "pkgswarm_served_bytes_total" {
			continue
		}
		for _, x := range mf.GetMetric() {
			out[label(x, "source")] = int64(counterValue(x))
		}
	}
	return out
}
