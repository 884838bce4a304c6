package lan

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// newTestMulti is a reader at pos with the given holders, no requests.
func newTestMulti(t *testing.T, pos int64, hs ...*holder) *multi {
	t.Helper()
	l := &Source{NodeID: "me", Label: "lan"}
	l.init()
	m := l.newMulti(context.Background(), "/_pkgswarm/v1/blob/sha256/ab", 100<<20, pos, nil)
	t.Cleanup(func() { m.Close() })
	for _, h := range hs {
		if h.grew.IsZero() {
			h.grew = l.Now() // seen just now
		}
		m.holders[h.peer.ID] = h
	}
	m.lastProbe = l.Now()
	return m
}

func TestPickRules(t *testing.T) {
	const mb = 1 << 20
	myRank := rendezvous("me", "/_pkgswarm/v1/blob/sha256/ab")
	above := func(id string) *holder {
		return &holder{peer: Peer{ID: id}, source: "lan", rank: myRank + 1, have: 10 * mb}
	}
	below := func(id string) *holder {
		return &holder{peer: Peer{ID: id}, source: "lan", rank: myRank - 1, have: 10 * mb}
	}
	tests := []struct {
		name     string
		holders  []*holder
		a, b     int64
		noWait   bool
		want     string
		wantEnd  int64
		wantWait bool
	}{
		{"a complete holder for a chunk it has",
			[]*holder{{peer: Peer{ID: "c"}, complete: true, have: 100 * mb}}, 0, mb, false, "c", mb, false},
		{"the least loaded of two that hold the chunk",
			[]*holder{{peer: Peer{ID: "busy"}, complete: true, have: 100 * mb, uploads: 3}, {peer: Peer{ID: "idle"}, complete: true, have: 100 * mb}},
			0, mb, false, "idle", mb, false},
		{"at the frontier, a relay ranked above rather than the bringer",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 10*mb + 5}, above("relay")}, 10 * mb, 11 * mb, false, "relay", 11 * mb, true},
		{"never wait on a relay ranked below",
			[]*holder{below("low")}, 10 * mb, 11 * mb, false, "", 0, false},
		{"a relay ranked below is asked for what it holds",
			[]*holder{{peer: Peer{ID: "low"}, source: "lan", rank: myRank - 1, have: 10*mb + 100}}, 10 * mb, 11 * mb, false, "low", 10*mb + 100 - heldBack, false},
		{"the bringer when it is the only upstream",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 10 * mb}, below("low")}, 10 * mb, 11 * mb, false, "origin", 11 * mb, true},
		{"no second waiting request",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 10 * mb}}, 10 * mb, 11 * mb, true, "", 0, false},
		{"at the frontier, the relay ranked next above, though one further up holds the chunk",
			[]*holder{{peer: Peer{ID: "far"}, source: "lan", rank: myRank + 9, have: 20 * mb}, above("next")}, 10 * mb, 11 * mb, false, "next", 11 * mb, true},
		{"the relay ranked next above for what it holds, though the bringer holds the chunk",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 20 * mb}, {peer: Peer{ID: "next"}, source: "lan", rank: myRank + 1, have: 10*mb + 7}},
			10 * mb, 11 * mb, true, "next", 10*mb + 7 - heldBack, false},
		{"not the bringer for a chunk a relay ranked below holds the start of",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 20 * mb}, {peer: Peer{ID: "low"}, source: "lan", rank: myRank - 1, have: 10*mb + 7}},
			10 * mb, 11 * mb, false, "low", 10*mb + 7 - heldBack, false},
		{"a relay whose download stopped growing is not waited at",
			[]*holder{{peer: Peer{ID: "origin"}, source: "origin", have: 10 * mb}, {peer: Peer{ID: "stuck"}, source: "lan", rank: myRank + 1, have: 10 * mb, grew: time.Now().Add(-time.Minute)}},
			10 * mb, 11 * mb, false, "origin", 11 * mb, true},
		{"a failed holder is skipped",
			[]*holder{{peer: Peer{ID: "c"}, complete: true, have: 100 * mb, fails: maxFails}}, 0, mb, false, "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMulti(t, tc.a, tc.holders...)
			m.mu.Lock()
			h, end, wait := m.pick(tc.a, tc.b, tc.noWait)
			m.mu.Unlock()
			got := ""
			if h != nil {
				got = h.peer.ID
			}
			if got != tc.want || (h != nil && (end != tc.wantEnd || wait != tc.wantWait)) {
				t.Fatalf("pick = %q end %d wait %v; want %q end %d wait %v", got, end, wait, tc.want, tc.wantEnd, tc.wantWait)
			}
		})
	}
}

func TestLeads(t *testing.T) {
	myRank := rendezvous("me", "/_pkgswarm/v1/blob/sha256/ab")
	const pos = 5 << 20
	tests := []struct {
		name    string
		holders []*holder
		want    bool
	}{
		{"nobody left", nil, true},
		{"a peer holds more", []*holder{{peer: Peer{ID: "p"}, source: "lan", rank: myRank - 1, have: pos + 1}}, false},
		{"a peer still brings bytes", []*holder{{peer: Peer{ID: "p"}, source: "origin", have: pos - 1}}, false},
		{"a relay with as much ranks above", []*holder{{peer: Peer{ID: "p"}, source: "lan", rank: myRank + 1, have: pos}}, false},
		{"relays below with less or as much", []*holder{{peer: Peer{ID: "p"}, source: "lan", rank: myRank - 1, have: pos}}, true},
		{"a dead bringer does not count", []*holder{{peer: Peer{ID: "p"}, source: "origin", have: pos + 9, fails: maxFails}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMulti(t, pos, tc.holders...)
			m.mu.Lock()
			got := m.leads()
			m.mu.Unlock()
			if got != tc.want {
				t.Fatalf("leads() = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("not on a stale look", func(t *testing.T) {
		m := newTestMulti(t, pos)
		m.mu.Lock()
		m.lastProbe = time.Now().Add(-time.Minute)
		got := m.leads()
		m.mu.Unlock()
		if got {
			t.Fatal("leads() on a look a minute old")
		}
	})
}

// Across sites a read waits, at its start, for a peer ranked above it that
// said it is about to read the file (its parent to be), instead of taking
// the newest bytes from the site that brings them: else the sites start
// side by side on the leader's uplink and the lower-ranked ones get ahead
// of their parents. The wait is bounded (parentWait).
func TestWideWaitsForItsParentToBe(t *testing.T) {
	const mb = 1 << 20
	what := "/_pkgswarm/v1/blob/sha256/ab"
	myRank := rendezvous("me", what)
	var above string
	for i := 0; above == ""; i++ {
		if id := "p" + strconv.Itoa(i); rendezvous(id, what) > myRank {
			above = id
		}
	}
	bringer := probeResult{peer: Peer{ID: "leader"}, state: stateFetching, have: 10 * mb, source: "origin"}
	for _, tc := range []struct {
		name    string
		results []probeResult
		late    bool // the read began parentWait ago
		want    string
	}{
		{"a peer ranked above is about to read", []probeResult{bringer, {peer: Peer{ID: above}, state: statePending}}, false, ""},
		{"the same after parentWait", []probeResult{bringer, {peer: Peer{ID: above}, state: statePending}}, true, "leader"},
		{"nobody above about to read", []probeResult{bringer}, false, "leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Source{NodeID: "me", Label: "swarm", Wide: true}
			l.init()
			m := l.newMulti(context.Background(), what, 100*mb, 0, tc.results)
			t.Cleanup(func() { m.Close() })
			m.mu.Lock()
			defer m.mu.Unlock()
			if tc.late {
				m.began = m.began.Add(-parentWait)
			}
			h, _, _ := m.pick(0, 8*mb, false)
			got := ""
			if h != nil {
				got = h.peer.ID
			}
			if got != tc.want {
				t.Fatalf("pick = %q; want %q", got, tc.want)
			}
		})
	}
}
