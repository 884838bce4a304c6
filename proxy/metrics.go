package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the counters behind /metrics. Each Server has its own
// registry, so several servers (tests, labs) never collide.
type metrics struct {
	reg *prometheus.Registry

	servedBytes    *prometheus.CounterVec // bytes sent to clients, by source
	sourceBytes    *prometheus.CounterVec // bytes received into the store, by source
	originBytes    prometheus.Counter
	originRequests prometheus.Counter
	originErrors   prometheus.Counter
	requests       *prometheus.CounterVec // by result: hit, miss, denied, refused, <status>
	verifyFailures *prometheus.CounterVec // by source
	rootsRefused   prometheus.Counter
	peerBytes      prometheus.Counter // bytes served to LAN peers
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.servedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgswarm_served_bytes_total",
		Help: "Bytes sent to clients, by the source that provided them (cache, lan, swarm, origin).",
	}, []string{"source"})
	m.sourceBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
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
		Help: "Origin requests that failed before a response (network errors).",
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
		Help: "Signed roots refused: bad signature, expired, or older than the one held.",
	})
	m.peerBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pkgswarm_peer_served_bytes_total",
		Help: "Bytes of verified blobs served to LAN peers.",
	})
	m.reg.MustRegister(m.peerBytes, m.servedBytes, m.sourceBytes, m.originBytes, m.originRequests, m.originErrors,
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
