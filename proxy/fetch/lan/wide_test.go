package lan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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

// Across sites a multi-source read asks one peer one range at a time: each
// request is a TCP connection of its own, and parallel flows through one
// site uplink overfilled its queue (the many-sites benchmark's chain of
// sites ran at 17.5 of 20 Mbit/s, losing 4–7 % of what it sent; with one
// request per peer the fleet took a median 176.6 s over twelve runs instead
// of 178.9–184.0 s; docs/benchmarks-fleet.md). On the LAN two run at once.
func TestWideAsksOnePeerOneRangeAtATime(t *testing.T) {
	const size = 20 << 20
	content, sum := randomFile(size, 3)
	for _, tc := range []struct {
		wide bool
		want int
	}{{true, 1}, {false, 2}} {
		t.Run(fmt.Sprintf("wide=%v", tc.wide), func(t *testing.T) {
			var mu sync.Mutex
			running, most := 0, 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Pkgswarm-State", stateComplete)
				if r.Method == http.MethodHead {
					w.Header().Set("Content-Length", strconv.Itoa(size))
					return
				}
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				defer func() {
					mu.Lock()
					running--
					mu.Unlock()
				}()
				time.Sleep(20 * time.Millisecond) // a round trip: requests overlap if the reader lets them
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
			}))
			defer srv.Close()
			l := &Source{Peers: &fixedPeers{list: []Peer{{ID: "far", URL: srv.URL}}}, NodeID: "me", Wide: tc.wide}
			got, err := readThrough(t.Context(), l, &repoindex.Expectation{SHA256: sum[:], Size: size})
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("read: %d bytes, equal %v, %v", len(got), bytes.Equal(got, content), err)
			}
			if most != tc.want {
				t.Errorf("at most %d range requests ran at the peer at once; want %d", most, tc.want)
			}
		})
	}
}
