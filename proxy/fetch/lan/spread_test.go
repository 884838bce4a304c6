package lan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// fixedPeers is a PeerSet with a fixed list; bans are recorded.
type fixedPeers struct {
	mu   sync.Mutex
	list []Peer
	bans []string
}

func (p *fixedPeers) Peers() []Peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.list)
}

func (p *fixedPeers) Ban(id string, until time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bans = append(p.bans, id+": "+reason)
}

// flightPeer serves a prefix of content by the peer protocol, as a node
// whose download of the file is in flight does: HEAD says how much it has
// written and where its bytes come from; a range it serves at once (all it
// has written but its last byte, which a download holds back until the file
// verified) is served, one past it is refused as busy (it never grows
// here). It counts the bytes it serves, in total and below split.
type flightPeer struct {
	id      string
	content []byte
	have    int64
	source  string // "origin" (it brings new bytes) or "lan" (it relays)
	split   int64

	mu      sync.Mutex
	uploads int64 // requests being served now
	gets    int   // GET requests (for bytes), served or refused
	sent    int64 // body bytes sent
	below   int64 // … of them, bytes before split
	srv     *httptest.Server
}

func newFlightPeer(t *testing.T, id string, content []byte, have int64, source string, split int64) *flightPeer {
	p := &flightPeer{id: id, content: content, have: have, source: source, split: split}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *flightPeer) peer() Peer { return Peer{ID: p.id, URL: p.srv.URL} }

func (p *flightPeer) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	p.mu.Lock()
	h.Set("X-Pkgswarm-State", stateFetching)
	h.Set("X-Pkgswarm-Have", strconv.FormatInt(p.have, 10))
	h.Set("X-Pkgswarm-Source", p.source)
	h.Set("X-Pkgswarm-Uploads", strconv.FormatInt(p.uploads, 10))
	p.mu.Unlock()
	size := int64(len(p.content))
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		return
	}
	p.mu.Lock()
	p.gets++
	p.mu.Unlock()
	var a, b int64
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b); err != nil || a > b || b >= size {
		http.Error(w, "closed ranges only", http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if serves := p.have - heldBack; p.have == size {
		// Written whole: verified, every byte is served.
	} else if b >= serves {
		h.Set("X-Pkgswarm-Busy", "frontier")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	p.mu.Lock()
	p.uploads++
	p.sent += b - a + 1
	p.below += max(0, min(b+1, p.split)-a)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.uploads--
		p.mu.Unlock()
	}()
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, size))
	h.Set("Content-Length", strconv.FormatInt(b-a+1, 10))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(p.content[a : b+1])
}

func (p *flightPeer) counts() (sent, below int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.below
}

// idsRanked returns n node ids for what, highest rendezvous rank first.
func idsRanked(what string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "n" + strconv.Itoa(i)
	}
	slices.SortFunc(ids, func(a, b string) int {
		ra, rb := rendezvous(a, what), rendezvous(b, what)
		switch {
		case ra > rb:
			return -1
		case ra < rb:
			return 1
		}
		return 0
	})
	return ids
}

// A node whose download brings new bytes (from the origin) spends its link
// on them; it serves the office through its one frontier place, not every
// chunk it happens to hold. Here several readers of one file see one such
// node holding all of it and three relays holding its first half: the relays
// serve the whole first half, the bringer only what nobody else holds. (Before,
// every reader asked the bringer for a share of the first half: it was the
// one holder of a chunk whenever the relays were busy, and the office
// benchmark's busiest node was the one fetching from the origin, 2.6× the
// mean.)
func TestMultiSparesTheBringer(t *testing.T) {
	t.Parallel()
	const size = 16 << 20
	content, sum := randomFile(size, 1)
	what := "/_pkgswarm/v1/blob/sha256/" + hex.EncodeToString(sum[:])
	// Readers rank above the relays, so no reader waits at a relay for
	// bytes it does not hold: what each peer serves is decided by the
	// reader's choice alone.
	ids := idsRanked(what, 8)
	readers, relayIDs := ids[:4], ids[5:]
	const split = size / 2
	bringer := newFlightPeer(t, ids[4], content, size, "origin", split)
	var relays []*flightPeer
	for _, id := range relayIDs {
		relays = append(relays, newFlightPeer(t, id, content, split+heldBack, "lan", split))
	}
	list := []Peer{bringer.peer()}
	for _, r := range relays {
		list = append(list, r.peer())
	}
	var wg sync.WaitGroup
	for _, id := range readers {
		wg.Go(func() {
			got, err := readThrough(t.Context(), &Source{Peers: &fixedPeers{list: list}, NodeID: id, MultiMinSize: 1, ChunkSize: 256 << 10},
				&repoindex.Expectation{SHA256: sum[:], Size: size})
			if err != nil {
				t.Errorf("reader %s: %v", id, err)
			} else if !bytes.Equal(got, content) {
				t.Errorf("reader %s got other bytes", id)
			}
		})
	}
	wg.Wait()
	sent, below := bringer.counts()
	t.Logf("bringer sent %d bytes, %d of them from the first half", sent, below)
	var total int64
	for _, r := range relays {
		s, _ := r.counts()
		total += s
		t.Logf("relay %s sent %d bytes", r.id, s)
	}
	if below != 0 {
		t.Errorf("the bringer sent %d bytes of the first half, which three relays hold", below)
	}
	if want := int64(len(readers)) * split; total != want {
		t.Errorf("the relays sent %d bytes, want the first half to every reader (%d)", total, want)
	}
}

// readThrough reads a whole file through the LAN tier, as the pipeline does
// (without verifying: the caller compares the bytes).
func readThrough(ctx context.Context, l *Source, e *repoindex.Expectation) ([]byte, error) {
	body, err := l.Fetch(ctx, &fetch.Attempt{Request: &fetch.Request{URL: "http://origin.example/pool/f.deb", Expect: e, Peers: true}})
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(io.LimitReader(body, e.Size))
}

// randomFile returns size reproducible random bytes (from seed) and their
// SHA-256.
func randomFile(size int, seed uint64) ([]byte, [32]byte) {
	content := make([]byte, size)
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	for i := range content {
		content[i] = byte(rnd.Uint32())
	}
	return content, sha256.Sum256(content)
}
