package proxy

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// failureLog keeps the most recent verification failures for the status
// page and dashboard.
type failureLog struct {
	mu   sync.Mutex // protects ring
	ring []Failure
}

// Failure is one verification failure.
type Failure struct {
	Time    time.Time `json:"time"`
	URL     string    `json:"url"`
	SHA256  string    `json:"sha256,omitempty"`
	Sources string    `json:"sources"`
	Reason  string    `json:"reason"`
}

const maxFailures = 100

func (s *Server) recordFailure(url, digest, sources, reason string) {
	s.fails.mu.Lock()
	defer s.fails.mu.Unlock()
	s.fails.ring = append(s.fails.ring, Failure{Time: s.now(), URL: url, SHA256: digest, Sources: sources, Reason: reason})
	if len(s.fails.ring) > maxFailures {
		s.fails.ring = s.fails.ring[len(s.fails.ring)-maxFailures:]
	}
}

// Status is the document behind GET /_pkgswarm/status.
type Status struct {
	NodeID    string           `json:"node_id"`
	Version   string           `json:"version"`
	Time      time.Time        `json:"time"`
	Offline   bool             `json:"offline"`
	Store     StoreStatus      `json:"store"`
	Served    map[string]int64 `json:"served_bytes"`
	Origin    OriginStatus     `json:"origin"`
	Requests  map[string]int64 `json:"requests"`
	HitRatio  float64          `json:"hit_ratio"`
	Failures  []Failure        `json:"verification_failures"`
	Repos     []RepoStatus     `json:"repositories"`
	RPMRepos  []RPMRepoStatus  `json:"rpm_repositories"`
	Transfers []TransferStatus `json:"transfers"`
	Peers     any              `json:"peers,omitempty"`
	Extra     map[string]any   `json:"extra,omitempty"`
	Keys      []string         `json:"trusted_keys"`
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

// RepoStatus is one repository root as accepted (or not) by pkgswarm.
type RepoStatus struct {
	Repo       string    `json:"repo"`
	URL        string    `json:"url"`
	Trusted    bool      `json:"trusted"`
	Note       string    `json:"note,omitempty"`
	Signer     string    `json:"signer,omitempty"`
	Date       time.Time `json:"date"`
	ValidUntil time.Time `json:"valid_until,omitempty"`
	Accepted   time.Time `json:"accepted"`
}

// Status gathers the current status.
func (s *Server) Status() Status {
	st := Status{NodeID: s.cfg.NodeID, Version: s.version(), Time: s.now(), Offline: s.cfg.Offline,
		Served: map[string]int64{}, Requests: map[string]int64{}}
	st.Store.Blobs, st.Store.Bytes = s.store.Usage()
	st.Store.MaxBytes = s.store.MaxBytes()
	mfs, _ := s.metrics.reg.Gather()
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
	s.fails.mu.Lock()
	st.Failures = append([]Failure(nil), s.fails.ring...)
	s.fails.mu.Unlock()
	roots, _ := s.store.Roots()
	for _, r := range roots {
		rs := RepoStatus{Repo: r.Repo, URL: r.URL, Trusted: !r.Untrusted, Signer: r.Signer, Date: r.Date,
			ValidUntil: r.ValidUntil, Accepted: r.Accepted}
		if r.Untrusted {
			rs.Note = "no trusted key signs this repository: cached by URL like any proxy, never shared with or taken from peers (add its key with --keyring)"
		}
		st.Repos = append(st.Repos, rs)
	}
	st.RPMRepos = s.RPMStatus()
	st.Transfers = s.flightsSnapshot()
	if s.cfg.PeerList != nil {
		st.Peers = s.cfg.PeerList()
	}
	if s.cfg.Extra != nil {
		st.Extra = s.cfg.Extra()
	}
	if s.cfg.Keyring != nil {
		st.Keys = s.cfg.Keyring.KeyIDs()
	}
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

// routes registers pkgswarm's own endpoints.
func (s *Server) routes() {
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /_pkgswarm/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.Status())
	})
	s.mux.HandleFunc("GET /_pkgswarm/v1/node", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": s.cfg.NodeID, "version": s.version()})
	})
	s.mux.HandleFunc("GET /_pkgswarm/v1/blob/sha256/{hex}", s.serveBlobToPeer) // GET also matches HEAD
	s.mux.HandleFunc("GET /_pkgswarm/v1/rpm/{key}", s.ServeRPMNameToPeer)
	d := s.Dashboard()
	s.mux.Handle("GET /{$}", d)
	s.mux.Handle("GET "+dashboardUIPrefix, d)
}
