package lan

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// A peer that said it held the file whole and then answers 404 lied, and is
// banned. One that said its download of the file was running and then
// answers 404 tells the truth when that download failed (its origin
// answered 404, say): it is passed over for this file, not banned for ten
// minutes.
func TestFailedDownloadIsNoLie(t *testing.T) {
	sum := sha256.Sum256([]byte("a small file"))
	for _, tc := range []struct {
		state  string
		banned bool
	}{{stateComplete, true}, {stateFetching, false}} {
		t.Run(tc.state, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.Header().Set("X-Pkgswarm-State", tc.state)
					w.Header().Set("X-Pkgswarm-Have", "3")
					w.Header().Set("X-Pkgswarm-Source", "origin")
					return
				}
				http.Error(w, "pkgswarm: download failed: origin: 404 Not Found", http.StatusNotFound)
			}))
			defer srv.Close()
			peers := &fixedPeers{list: []Peer{{ID: "p", URL: srv.URL}}}
			l := &Source{Peers: peers, NodeID: "me"}
			_, err := l.Fetch(t.Context(), &fetch.Attempt{Request: &fetch.Request{URL: "http://origin.example/pool/f.deb",
				Expect: &repoindex.Expectation{SHA256: sum[:], Size: 12}, Peers: true}})
			if !errors.Is(err, fetch.ErrNotFound) {
				t.Fatalf("err %v; want ErrNotFound (the next tier asks)", err)
			}
			peers.mu.Lock()
			defer peers.mu.Unlock()
			if banned := len(peers.bans) > 0; banned != tc.banned {
				t.Fatalf("a peer that said %q and then answered 404: banned %v (%q); want %v", tc.state, banned, peers.bans, tc.banned)
			}
			if tc.banned && !strings.Contains(peers.bans[0], "announced") {
				t.Errorf("ban reason %q does not say what the peer did", peers.bans[0])
			}
		})
	}
}
