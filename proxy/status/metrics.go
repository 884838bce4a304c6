package status

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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
// logs one debug line, and one warn line per failure (status 500 and up, with
// the X-Pkgswarm-Error reason).
func (m *Metrics) Handler(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &recorder{ResponseWriter: rw, status: http.StatusOK}
		defer func() {
			m.count(w, r)
			if w.status >= 500 {
				log.Warn("request failed", "method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr,
					"status", w.status, "err", w.Header().Get("X-Pkgswarm-Error"))
			}
			if log.Enabled(r.Context(), slog.LevelDebug) {
				// Only then: building the line's arguments costs on every hit.
				log.Debug("request", "method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr,
					"status", w.status, "bytes", w.n, "source", w.Header().Get("X-Pkgswarm-Source"), "dur", time.Since(start).Round(time.Microsecond))
			}
		}()
		next.ServeHTTP(w, r)
	})
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
