package lan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Across sites (Wide) a peer is a node the DHT named, not a machine of the
// office. One that outranks this node and answers "pending" for ever (a
// hostile node, or one stuck in its LAN round) is waited for once, for Wait,
// and then banned, like a peer that said "starting" and sent nothing: else
// it would hold every fetch of every node for Wait.
func TestWidePendingForEverIsBanned(t *testing.T) {
	sum := sha256.Sum256([]byte("a file"))
	what := "/_pkgswarm/v1/blob/sha256/" + hex.EncodeToString(sum[:])
	ids := idsRanked(what, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pkgswarm-State", statePending)
		w.Header().Set("X-Pkgswarm-Stage", "wide")
	}))
	defer srv.Close()
	peers := &fixedPeers{list: []Peer{{ID: ids[0], URL: srv.URL}}}
	l := &Source{Peers: peers, NodeID: ids[1], Wide: true, Wait: 300 * time.Millisecond}
	for i := range 2 {
		began := time.Now()
		_, err := l.Fetch(t.Context(), &fetch.Attempt{Request: &fetch.Request{URL: "http://origin.example/pool/f.deb",
			Expect: &repoindex.Expectation{SHA256: sum[:], Size: 6}, Peers: true}})
		if !errors.Is(err, fetch.ErrNotFound) {
			t.Fatalf("fetch %d: err %v; want ErrNotFound", i+1, err)
		}
		t.Logf("fetch %d gave up after %v: %v", i+1, time.Since(began).Round(time.Millisecond), err)
	}
	peers.mu.Lock()
	defer peers.mu.Unlock()
	if len(peers.bans) != 1 || !strings.HasPrefix(peers.bans[0], ids[0]+":") {
		t.Fatalf("bans %q; want %s banned once (the second fetch must not wait for it again)", peers.bans, ids[0])
	}
}
