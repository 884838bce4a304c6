package lan

import (
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// A round in which most peers did not answer within the budget says
// nothing about who holds the file: on an office's saturated machines (20
// nodes on two cores in the fleet benchmark) every answer can come late.
// Taking it for "nobody has it" sent a second node to the origin for a file
// a peer held. The round listens to its HEADs for twice the budget more,
// and asks no peer twice: a late answer is used as it comes.
func TestSilentRoundListensLonger(t *testing.T) {
	content := []byte("a small package that one peer holds")
	sum := sha256.Sum256(content)
	var heads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && heads.Add(1) == 1 {
			// The probe's answer comes after the round's budget.
			select {
			case <-time.After(200 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("X-Pkgswarm-State", stateComplete)
		w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		if r.Method == http.MethodGet {
			w.Write(content)
		}
	}))
	defer srv.Close()
	peers := &fixedPeers{list: []Peer{{ID: "holder", URL: srv.URL}}}
	l := &Source{Peers: peers, NodeID: "me", Budget: 100 * time.Millisecond}
	body, err := l.Fetch(t.Context(), &fetch.Attempt{Request: &fetch.Request{URL: "http://origin.example/pool/f.deb",
		Expect: &repoindex.Expectation{SHA256: sum[:], Size: int64(len(content))}, Peers: true}})
	if err != nil {
		t.Fatalf("a round the only peer did not answer in time ended the LAN tier: %v (the next tier is the origin)", err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if err != nil || string(got) != string(content) {
		t.Fatalf("read %q, %v", got, err)
	}
	if n := heads.Load(); n != 1 {
		t.Errorf("%d probes, want 1 (the late answer to the first)", n)
	}
}

// Every round asks each peer once: peers that answer, all "not here", end
// the tier at once, and peers that never answer end it after the round's
// longer listening, without a second HEAD.
func TestEachRoundAsksEachPeerOnce(t *testing.T) {
	sum := sha256.Sum256([]byte("nobody has it"))
	req := &fetch.Request{URL: "http://origin.example/pool/g.deb", Expect: &repoindex.Expectation{SHA256: sum[:], Size: 13}, Peers: true}
	for _, tc := range []struct {
		name   string
		silent bool
	}{{"answered 404", false}, {"never answers", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var heads atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				heads.Add(1)
				if tc.silent {
					<-r.Context().Done()
					return
				}
				http.NotFound(w, r)
			}))
			defer srv.Close()
			l := &Source{Peers: &fixedPeers{list: []Peer{{ID: "p", URL: srv.URL}}}, NodeID: "me", Budget: 50 * time.Millisecond}
			start := time.Now()
			_, err := l.Fetch(t.Context(), &fetch.Attempt{Request: req})
			if !errors.Is(err, fetch.ErrNotFound) {
				t.Fatalf("err %v; want ErrNotFound", err)
			}
			if n := heads.Load(); n != 1 {
				t.Errorf("%d probes, want 1", n)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the tier took %v", d)
			}
		})
	}
}

// A round that most peers answered does not wait for the silent rest
// beyond the budget: one peer gone without a goodbye must not cost every
// miss of the office twice the budget more.
func TestAnsweredRoundDoesNotListenLonger(t *testing.T) {
	sum := sha256.Sum256([]byte("nobody has it"))
	req := &fetch.Request{URL: "http://origin.example/pool/h.deb", Expect: &repoindex.Expectation{SHA256: sum[:], Size: 13}, Peers: true}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer silent.Close()
	const budget = time.Second // then 2 s more if the round listened longer
	l := &Source{Peers: &fixedPeers{list: []Peer{{ID: "a", URL: notFound.URL}, {ID: "b", URL: notFound.URL}, {ID: "c", URL: silent.URL}}},
		NodeID: "me", Budget: budget}
	start := time.Now()
	_, err := l.Fetch(t.Context(), &fetch.Attempt{Request: req})
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("err %v; want ErrNotFound", err)
	}
	if d := time.Since(start); d >= 2*budget {
		t.Errorf("the tier took %v for a round two of three peers answered: it waited for the silent one past the %v budget", d, budget)
	}
}
