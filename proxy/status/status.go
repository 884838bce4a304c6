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

// SchemaVersion is the "version" of the status document: it changes only
// when a field changes meaning or goes away (new fields may appear at any
// time). docs/status-json.md describes version 1.
const SchemaVersion = 1

// Status is the document behind GET /_pkgswarm/status (docs/status-json.md).
// Its keys are snake_case throughout, absent dates are left out, and lists
// are [] when empty, never null.
type Status struct {
	Version         int                   `json:"version"` // SchemaVersion
	PkgswarmVersion string                `json:"pkgswarm_version"`
	NodeID          string                `json:"node_id"`
	Time            time.Time             `json:"time"`
	Offline         bool                  `json:"offline"`
	Store           StoreStatus           `json:"store"`
	Served          map[string]int64      `json:"served_bytes"`
	Origin          OriginStatus          `json:"origin"`
	Requests        map[string]int64      `json:"requests"`
	HitRatio        float64               `json:"hit_ratio"`
	Failures        []Failure             `json:"verification_failures"`
	Repos           []trust.RepoStatus    `json:"repositories"`
	RPMRepos        []trust.RPMRepoStatus `json:"rpm_repositories"`
	Transfers       []fetch.Transfer      `json:"transfers"`
	Peers           []Peer                `json:"peers"`
	Extra           map[string]any        `json:"extra,omitempty"`
	Keys            []string              `json:"trusted_keys"`
}

// Peer is one row of the peer table: a LAN peer as discovery reports it.
type Peer struct {
	ID          string            `json:"id"`
	URL         string            `json:"url"`
	Addrs       []string          `json:"addrs"`
	Port        int               `json:"port,omitempty"`
	TXT         map[string]string `json:"txt,omitempty"`
	Source      string            `json:"source"` // "mdns" or "static"
	FirstSeen   time.Time         `json:"first_seen,omitzero"`
	LastSeen    time.Time         `json:"last_seen,omitzero"`
	Healthy     bool              `json:"healthy"`
	Failures    int               `json:"failures"`
	BannedUntil time.Time         `json:"banned_until,omitzero"`
}

// peersOf reads the peer table Node.Peers gives (discovery.Peer values
// today, or anything with those field names) into Peers, by field name in
// snake_case.
func peersOf(v any) []Peer {
	peers := []Peer{}
	if v == nil {
		return peers
	}
	b, err := json.Marshal(snakeValue(v))
	if err != nil {
		return peers
	}
	if json.Unmarshal(b, &peers) != nil || peers == nil {
		return []Peer{}
	}
	for i := range peers {
		if peers[i].Addrs == nil {
			peers[i].Addrs = []string{}
		}
	}
	return peers
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
	NodeID, Version string // Version is pkgswarm's (Status.PkgswarmVersion)
	Offline         bool
	Store           *store.Store
	Trust           *trust.Resolver
	Fetch           *fetch.Fetcher
	Metrics         *Metrics
	// Peers, if set, lists peers for the status page and dashboard: a
	// slice of structs with Peer's field names (discovery.Peer).
	Peers func() any
	// Extra, if set, adds sections to the status document. Each value is
	// written in snake_case, whatever its type's field names.
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
	st := Status{Version: SchemaVersion, PkgswarmVersion: n.Version, NodeID: n.NodeID, Time: n.now(), Offline: n.Offline,
		Served: map[string]int64{}, Requests: map[string]int64{}, Peers: []Peer{}}
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
	st.Repos = nonNil(n.Trust.Repos())
	for i := range st.Repos {
		st.Repos[i].Keys = nonNil(st.Repos[i].Keys)
	}
	st.RPMRepos = nonNil(n.Trust.RPMRepos())
	for i := range st.RPMRepos {
		st.RPMRepos[i].Keys = nonNil(st.RPMRepos[i].Keys)
	}
	st.Transfers = nonNil(n.Fetch.Transfers())
	if n.Peers != nil {
		st.Peers = peersOf(n.Peers())
	}
	if n.Extra != nil {
		if extra := n.Extra(); len(extra) > 0 {
			st.Extra = make(map[string]any, len(extra))
			for k, v := range extra {
				st.Extra[k] = snakeValue(v)
			}
		}
	}
	st.Keys = nonNil(n.Trust.TrustedKeys())
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

// nonNil makes a nil slice an empty one: [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
