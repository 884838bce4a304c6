package status

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/trust"
)

// Failure is one verification failure (or refused root).
type Failure struct {
	Time    time.Time `json:"time"`
	URL     string    `json:"url"`
	SHA256  string    `json:"sha256,omitempty"`
	Sources string    `json:"sources"`
	Reason  string    `json:"reason"`
}

// FailureLog keeps the most recent verification failures. The zero value is
// ready to use.
type FailureLog struct {
	mu   sync.Mutex // protects ring
	ring []Failure
	Now  func() time.Time // nil: time.Now
}

const maxFailures = 100

// Record adds a failure.
func (l *FailureLog) Record(url, digest, sources, reason string) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring = append(l.ring, Failure{Time: now(), URL: url, SHA256: digest, Sources: sources, Reason: reason})
	if len(l.ring) > maxFailures {
		l.ring = l.ring[len(l.ring)-maxFailures:]
	}
}

// List returns the failures, oldest first.
func (l *FailureLog) List() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Failure{}, l.ring...)
}

// Status is the document behind GET /_pkgswarm/status.
type Status struct {
	NodeID    string                `json:"node_id"`
	Version   string                `json:"version"`
	Time      time.Time             `json:"time"`
	Offline   bool                  `json:"offline"`
	Store     StoreStatus           `json:"store"`
	Served    map[string]int64      `json:"served_bytes"`
	Origin    OriginStatus          `json:"origin"`
	Requests  map[string]int64      `json:"requests"`
	HitRatio  float64               `json:"hit_ratio"`
	Failures  []Failure             `json:"verification_failures"`
	Repos     []trust.RepoStatus    `json:"repositories"`
	RPMRepos  []trust.RPMRepoStatus `json:"rpm_repositories"`
	Transfers []fetch.Transfer      `json:"transfers"`
	Peers     any                   `json:"peers,omitempty"`
	Extra     map[string]any        `json:"extra,omitempty"`
	Keys      []string              `json:"trusted_keys"`
}

// StoreStatus describes the content store.
type StoreStatus struct {
	Blobs    int   `json:"blobs"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
}

// OriginStatus counts origin traffic.
type OriginStatus struct {
	Bytes    int64 `json:"bytes"`
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
}

// Node is what the status page, the dashboard and /metrics read. Store,
// Trust, Fetch and Metrics are required.
type Node struct {
	NodeID, Version string
	Offline         bool
	Store           *store.Store
	Trust           *trust.Resolver
	Fetch           *fetch.Fetcher
	Metrics         *Metrics
	// Peers, if set, lists peers for the status page and dashboard.
	Peers func() any
	// Extra, if set, adds sections to the status document.
	Extra func() map[string]any
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

func (n *Node) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// Status gathers the current status.
func (n *Node) Status() Status {
	st := Status{NodeID: n.NodeID, Version: n.Version, Time: n.now(), Offline: n.Offline,
		Served: map[string]int64{}, Requests: map[string]int64{}}
	st.Store.Blobs, st.Store.Bytes = n.Store.Usage()
	st.Store.MaxBytes = n.Store.MaxBytes()
	mfs, _ := n.Metrics.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := int64(counterValue(m))
			switch mf.GetName() {
			case "pkgswarm_served_bytes_total":
				st.Served[label(m, "source")] = v
			case "pkgswarm_requests_total":
				st.Requests[label(m, "result")] = v
			case "pkgswarm_origin_bytes_total":
				st.Origin.Bytes = v
			case "pkgswarm_origin_requests_total":
				st.Origin.Requests = v
			case "pkgswarm_origin_errors_total":
				st.Origin.Errors = v
			}
		}
	}
	if total := st.Requests["hit"] + st.Requests["miss"]; total > 0 {
		st.HitRatio = float64(st.Requests["hit"]) / float64(total)
	}
	st.Failures = n.Metrics.failures.List()
	st.Repos = n.Trust.Repos()
	st.RPMRepos = n.Trust.RPMRepos()
	st.Transfers = n.Fetch.Transfers()
	if n.Peers != nil {
		st.Peers = n.Peers()
	}
	if n.Extra != nil {
		st.Extra = n.Extra()
	}
	st.Keys = n.Trust.TrustedKeys()
	return st
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Mux is where Routes registers its endpoints (a *http.ServeMux, or the
// front's Handle).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Routes registers GET /metrics, GET /_pkgswarm/status and the dashboard
// (GET / and GET /_pkgswarm/ui/...) on mux. The dashboard's sampler runs
// until ctx ends.
func (n *Node) Routes(ctx context.Context, mux Mux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.Metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /_pkgswarm/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	}))
	d := n.Dashboard(ctx)
	mux.Handle("GET /{$}", d)
	mux.Handle("GET "+dashboardUIPrefix, d)
}
