package lan

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// stallingOrigin is an origin whose first answer stalls half way (the
// office's uplink cut) and whose later answers serve the file from the
// offset asked (the link is back). Its first answer calls onFirst: the
// office's other nodes start reading this node's download then.
type stallingOrigin struct {
	content []byte
	onFirst func()
	fetchtest.OffsetLog
}

func (o *stallingOrigin) Name() string { return "origin" }

func (o *stallingOrigin) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	size := int64(len(o.content))
	if o.Add(a.Offset) == 1 {
		o.onFirst()
		return &fetch.Body{ReadCloser: fetchtest.FaultyBytes(ctx, o.content, fetchtest.Stall), Size: size, Peer: a.URL}, nil
	}
	return &fetch.Body{ReadCloser: io.NopCloser(bytes.NewReader(o.content[a.Offset:])), Start: a.Offset, Size: size, Peer: a.URL}, nil
}

// The node that brings a file from the origin for its office, when its
// origin read stalls (the uplink cut) and it tries again, goes back to the
// origin from its offset: its LAN peers whose downloads relay its own bytes
// (they read from it and hold no more than it does) are not read from. They
// wait for bytes only it can bring. Before, its LAN round found them, read
// from them (asking for bytes they did not hold: refused or waited for)
// until its stall timeout cut them twice, and meanwhile they went to the
// origin themselves: the office benchmark's churn run fetched the rest of
// the file twice more (1.76 origin copies). A relay that holds bytes past
// the node's offset is still read from.
func TestResumeSkipsPeersRelayingItsOwnBytes(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	const half = size / 2 // where the origin's first answer stalls
	content, sum := randomFile(size, 7)
	what := "/_pkgswarm/v1/blob/sha256/" + hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name   string
		have   []int64 // bytes each peer has written (it serves all but heldBack)
		source string  // where the peers' bytes come from
		asked  []bool  // whether each peer is asked for bytes past half
	}{
		{"relays behind it", []int64{half + heldBack, half - 1000}, "lan", []bool{false, false}},
		{"a relay ahead of it", []int64{half + 64<<10 + heldBack}, "lan", []bool{true}},
		{"a relay ahead of it and one behind", []int64{half + 64<<10 + heldBack, half + heldBack}, "lan", []bool{true, false}},
		{"a peer behind it that brings bytes from the origin", []int64{half - 1000}, "origin", []bool{true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The relays rank above this node: the multi-source reader
			// waits at such a relay for the bytes at its frontier.
			ids := idsRanked(what, len(tc.have)+1)
			var relays []*flightPeer
			var list []Peer
			for i, have := range tc.have {
				r := newFlightPeer(t, ids[i], content, have, tc.source, 0)
				relays = append(relays, r)
				list = append(list, r.peer())
			}
			peers := &fixedPeers{} // nobody reads this node's download yet
			origin := &stallingOrigin{content: content, onFirst: func() {
				peers.mu.Lock()
				peers.list = list
				peers.mu.Unlock()
			}}
			st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			obs := &fetchtest.Recorder{}
			f, err := fetch.New(fetch.Config{Store: st, Observer: obs, StallTimeout: fetchtest.StallTimeout,
				Site: []fetch.Source{&Source{Peers: peers, NodeID: ids[len(ids)-1], MultiMinSize: 1,
					ChunkSize: 64 << 10, Budget: 5 * time.Second, Wait: 2 * time.Second}},
				Origin: origin})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			res, err := f.Get(ctx, &fetch.Request{URL: "http://origin.example/pool/f.deb", Peers: true,
				Expect: &repoindex.Expectation{SHA256: sum[:], Size: size, Key: repoindex.DigestKey(sum[:]), Root: "test root"}})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-res.Flight.Done():
			case <-ctx.Done():
				t.Fatalf("the download did not end: %v", ctx.Err())
			}
			if err := res.Flight.Err(); err != nil {
				t.Fatalf("download: %v (origin asked at offsets %v)", err, origin.Offsets())
			}
			if got := res.Flight.Digest(); got != store.Digest(sum) {
				t.Fatalf("committed %s", got)
			}
			offs := origin.Offsets()
			var gets int
			var sent int64
			for i, r := range relays {
				r.mu.Lock()
				n := r.gets
				gets, sent = gets+n, sent+r.sent
				r.mu.Unlock()
				if n > 0 != tc.asked[i] {
					t.Errorf("peer %d (holding %d bytes, from %s) was asked for %d ranges; want asked: %v", i, tc.have[i], tc.source, n, tc.asked[i])
				}
			}
			t.Logf("origin asked at offsets %v; the peers were asked %d ranges and sent %d bytes", offs, gets, sent)
			if len(offs) != 2 || offs[0] != 0 {
				t.Fatalf("origin asked at offsets %v; want 0, then once more where the download stood", offs)
			}
			if slices.Contains(tc.asked, true) {
				// (The test's peers never grow: the bytes they do not hold
				// are refused, and the origin sends the rest.)
				if tc.source == "lan" && (sent == 0 || offs[1] <= half) {
					t.Errorf("the relay ahead sent %d bytes and the origin resumed at %d; want the relay's bytes past %d read first", sent, offs[1], half)
				}
				return
			}
			if offs[1] != half {
				t.Errorf("origin resumed at %d; want %d", offs[1], half)
			}
			if got := obs.FetchedFrom("origin"); got != size {
				t.Errorf("origin sent %d bytes; want the file once (%d)", got, size)
			}
		})
	}
}
