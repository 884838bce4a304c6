package lan_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
)

// The LAN tier passes the conformance suite: a real peer (the peer
// protocol over HTTP) misbehaving in each way, with the origin after it.
func TestConformance(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		srv := faultyPeer(t, content, fault)
		cfg.Site = []fetch.Source{&lan.Source{NodeID: "tester", Peers: &peers{list: []lan.Peer{{ID: "peer", URL: srv.URL}}}, Budget: probeBudget}}
		cfg.Origin = fallback
	})
}

// The multi-source reader (files from MultiMinSize on) passes it too: it
// reads the file by ranges, here from one misbehaving peer.
func TestConformanceMulti(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		srv := faultyPeer(t, content, fault)
		cfg.Site = []fetch.Source{&lan.Source{NodeID: "tester", Peers: &peers{list: []lan.Peer{{ID: "peer", URL: srv.URL}}},
			MultiMinSize: 1, ChunkSize: 32 << 10, ChunkStall: time.Second, Budget: probeBudget}}
		cfg.Origin = fallback
	})
}

// probeBudget bounds the suite's HEAD probe rounds. The suite tests what a
// peer's body does; with the default 500 ms a probe answered late on a
// loaded machine (a fresh-clone CI run, every package's tests under -race)
// found no holder, and the good case went to the fallback from offset 0.
const probeBudget = 10 * time.Second

// faultyPeer serves content by the peer protocol's blob path, misbehaving as
// fault says.
func faultyPeer(t *testing.T, content []byte, fault fetchtest.Fault) *httptest.Server {
	h := fetchtest.Handler(content, fault)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/_pkgswarm/v1/blob/sha256/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// peers is a fixed PeerSet that records bans.
type peers struct {
	mu   sync.Mutex
	list []lan.Peer
	bans []string
}

func (p *peers) Peers() []lan.Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]lan.Peer(nil), p.list...)
}

func (p *peers) Ban(id string, until time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bans = append(p.bans, id)
}
