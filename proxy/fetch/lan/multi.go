package lan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// A large file is read from many holders at once: the multi-source reader
// below. Every pkgswarm download grows as a prefix of the file (the pipeline
// writes in order), so what a peer holds is one number, X-Pkgswarm-Have,
// and a peer whose download is still running can serve every byte below it
// at once, and the bytes after it as they arrive. The reader splits the file
// into chunks, keeps a window of them in flight, and asks each chunk of:
//
//  0. its parent, when this node relays (its download reads from LAN peers)
//     and a relay ranks above it: the relay ranked next above it (rendezvous
//     rank of node id and file, the LAN election's order). What the parent
//     holds is asked of it; at the frontier the request waits there;
//  1. else a peer that holds the whole chunk (a complete blob, or a download
//     past it), fewest transfers first;
//  2. else a peer that holds its start: only what it holds is asked;
//  3. else, nobody holding it yet, a peer that brings new bytes (its
//     download reads from the origin or the swarm), or a relay that ranks
//     above this node; the request then waits at that peer for the bytes.
//
// Rule 0 is what spreads a download that starts everywhere at once: every
// relay waits at one parent and each parent has one child asking for its
// frontier place (a download serves its newest bytes to one waiting peer),
// so the newest bytes flow down a chain in rank order and every node sends
// about one copy. A node that brings new bytes is asked only when no other
// peer holds the chunk's start or relays to this node, or when the reader
// has been without a request for starveAfter: asked for every chunk it held
// whenever the relays were busy, it served the whole office (issue 14). A
// relay whose download has not grown for staleRelay is not waited at: it
// may be waiting for a stuck peer itself; a reader that got no byte for
// chainPatience asks anyone until bytes flow again. Waiting only on
// higher-ranked relays keeps the waits acyclic, which needs a download in
// flight to be asked only for what it serves at once (holds: all but the
// byte it holds back). When nothing can serve the next byte — every peer
// that brought new bytes is gone — the node that holds the most (first by
// rank among equals) stops reading from its peers: its pipeline goes on to
// the swarm or the origin from its offset, and the others wait on it
// (rule 3). Everything the reader returns is verified by the pipeline as one
// file; a file that fails is blamed on every peer that contributed
// (Source.Penalize).

// Multi-source defaults.
const (
	defaultMultiMinSize = 4 << 20
	defaultChunkSize    = 1 << 20
	defaultWindow       = 4
	defaultPerPeer      = 2
	// Across sites (Source.Wide): one request at a time per peer, so
	// chunks long enough that the round trip between them is small
	// against their transfer (8 MiB: 3.4 s at 20 Mbit/s).
	defaultWideChunkSize = 8 << 20
	defaultWideWindow    = 2
	defaultWidePerPeer   = 1
	// defaultChunkStall cuts one range request that delivers nothing for
	// this long (another peer is asked); well under the pipeline's
	// StallTimeout, which cuts the whole reader.
	defaultChunkStall = 4 * time.Second
	// reprobeEvery is how often a running reader asks every peer again
	// (new holders, progress of those it knows).
	reprobeEvery = time.Second
	// busyBackoff is how long a peer that said it was busy is not asked.
	busyBackoff = 150 * time.Millisecond
	// staleRelay: a relay whose download has not grown for this long is
	// not waited at (it may be waiting for a stuck peer itself); readers
	// go to the other rules.
	staleRelay = 2 * time.Second
	// maxFails drops a holder after this many failed requests in a row.
	maxFails = 3
	// extraTail is how many bytes past the end of the file the reader
	// passes on when a peer sends them, so that the pipeline sees a peer
	// that sent too much and blames it.
	extraTail = 1 << 10
)

// holder is one peer the reader may ask; fields are protected by
// multi.mu.
type holder struct {
	peer     Peer
	complete bool      // it holds the verified blob
	have     int64     // bytes of the file it holds (a prefix)
	grew     time.Time // when have last grew (or the holder was first seen)
	source   string    // the tier its download reads from ("origin", "swarm", "lan")
	uploads  int64     // peer transfers it last said it serves
	rank     uint64    // rendezvous(peer.ID, file)
	inflight int       // requests of ours to it now
	fails    int       // failed requests in a row
	until    time.Time
	used     bool // it contributed bytes
}

// brings reports whether the holder's download brings new bytes into the
// site (as opposed to relaying its peers').
func (h *holder) brings(tier string) bool {
	return !h.complete && h.source != "" && h.source != tier
}

type chunk struct {
	off, end int64 // [off, end) of the file
	buf      []byte
	n        int64 // bytes filled from off
	busy     bool  // a request is filling it
	waiting  bool  // the request waits at a peer for bytes it does not hold yet
	extra    []byte
}

// multi is a multi-source reader over LAN peers; see the comment above.
type multi struct {
	l        *Source
	what     string
	size     int64
	myRank   uint64
	chunk    int64
	window   int
	stall    time.Duration
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	token    string
	deadline time.Time // when a stuck reader gives up (zero while it is not stuck)
	resumed  bool      // the read began past the file's start: this node's own source failed (Source.relaysBehind)

	mu        sync.Mutex // protects the fields below
	wake      chan struct{}
	pos       int64
	next      int64 // start of the first chunk not yet in chunks
	chunks    []*chunk
	holders   map[string]*holder // by peer id
	parent    *holder            // the upstream whose newest bytes this reader got last
	idleSince time.Time          // since when no request runs (zero: one runs)
	lastByte  time.Time          // when a request last brought bytes
	probing   bool
	lastProbe time.Time
	closed    bool
	// Across sites: when the read began, and whether a peer ranked above
	// this node said at the last probe that it is about to read the file
	// too (pending, starting): a relay to be (see parentSoon).
	began time.Time
	soon  bool
}

func (l *Source) newMulti(ctx context.Context, what string, size, offset int64, results []probeResult) *multi {
	ctx, cancel := context.WithCancel(ctx)
	m := &multi{l: l, what: what, size: size, myRank: rendezvous(l.self(), what),
		chunk: l.ChunkSize, window: l.Window, stall: l.ChunkStall, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}), pos: offset, next: offset, holders: map[string]*holder{}, lastProbe: l.Now(), lastByte: l.Now(),
		began: l.Now(), resumed: offset > 0}
	m.merge(results)
	return m
}

// merge updates the holders from a probe round. m.mu is held or m is not
// shared yet.
func (m *multi) merge(results []probeResult) {
	m.soon = false
	for _, r := range results {
		if r.state == statePending || r.state == stateStarting {
			m.soon = m.soon || (m.l.Wide && rendezvous(r.peer.ID, m.what) > m.myRank)
			continue
		}
		if r.state != stateComplete && r.state != stateFetching {
			continue
		}
		h := m.holders[r.peer.ID]
		if h == nil && m.resumed && m.l.relaysBehind(r, m.pos) {
			continue // it relays this node's own bytes (Source.relaysBehind)
		}
		if h == nil {
			h = &holder{peer: r.peer, rank: rendezvous(r.peer.ID, m.what), grew: m.l.Now()}
			m.holders[r.peer.ID] = h
		}
		h.peer = r.peer
		h.complete = r.state == stateComplete
		m.setHave(h, r.have)
		if h.complete {
			m.setHave(h, m.size)
		}
		h.source = r.source
		h.uploads = r.uploads
		h.fails = 0 // it answered: ask it again
	}
}

// heldBack is how many of the bytes a download in flight has written it
// does not serve yet: its last one, until the file verified (the store's
// holdBack). A range asked of it for everything it has would wait for its
// next byte, and such a wait at a lower-ranked peer can close a cycle.
const heldBack = 1

// holds is how many bytes h serves at once: the file when it is complete,
// else all it has written but heldBack. m.mu is held.
func (m *multi) holds(h *holder) int64 {
	if h.complete {
		return h.have
	}
	return max(0, h.have-heldBack)
}

// setHave records that h holds at least v bytes. m.mu is held or m is not
// shared yet.
func (m *multi) setHave(h *holder, v int64) {
	if v > h.have {
		h.have, h.grew = v, m.l.Now()
	}
}

// growing reports whether h's download has brought bytes lately (or h
// was seen only lately): a relay that has not is not waited at, it may be
// stuck itself. m.mu is held.
func (m *multi) growing(h *holder, now time.Time) bool {
	return h.complete || now.Sub(h.grew) < staleRelay
}

func (m *multi) broadcast() {
	close(m.wake)
	m.wake = make(chan struct{})
}

// Read implements io.Reader: the file's bytes in order from the offset.
func (m *multi) Read(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.closed {
			return 0, errors.New("lan: read after close")
		}
		if err := m.ctx.Err(); err != nil {
			return 0, err
		}
		// A consumed chunk is dropped; the file's last one only once its
		// request ended, which may bring bytes past the end.
		for len(m.chunks) > 0 && m.pos >= m.chunks[0].end && (m.chunks[0].end < m.size || !m.chunks[0].busy) {
			c := m.chunks[0]
			m.chunks = m.chunks[1:]
			if len(c.extra) > 0 {
				// Bytes past the file's end: the pipeline stops at its
				// limit and blames this source.
				m.chunks = append([]*chunk{{off: c.end, end: c.end + int64(len(c.extra)), buf: c.extra, n: int64(len(c.extra))}}, m.chunks...)
			}
		}
		m.fill()
		// Look at every peer again each second, also while bytes flow:
		// whom to ask depends on how much the others hold now.
		if m.l.Now().Sub(m.lastProbe) >= reprobeEvery && !m.probing {
			m.probing = true
			m.wg.Add(1)
			go m.reprobe()
		}
		m.schedule()
		if len(m.chunks) > 0 {
			c := m.chunks[0]
			if m.pos < c.off+c.n {
				k := copy(p, c.buf[m.pos-c.off:c.n])
				m.pos += int64(k)
				m.deadline = time.Time{}
				return k, nil
			}
		}
		if m.pos >= m.size && len(m.chunks) == 0 {
			return 0, io.EOF
		}
		if m.stuck() {
			now := m.l.Now()
			if m.deadline.IsZero() {
				m.deadline = now.Add(m.l.Wait)
			}
			if m.leads() || now.After(m.deadline) {
				return 0, fmt.Errorf("lan: no peer holds or brings %s past byte %d: %w", m.what, m.pos, errNoHolder)
			}
		}
		wake := m.wake
		m.mu.Unlock()
		select {
		case <-wake:
		case <-m.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		m.mu.Lock()
	}
}

// errNoHolder: the reader found nothing to read the next byte from.
var errNoHolder = errors.New("no holder")

// fill extends the window. m.mu is held.
func (m *multi) fill() {
	for len(m.chunks) < m.window && m.next < m.size {
		end := min(m.size, (m.next/m.chunk+1)*m.chunk)
		m.chunks = append(m.chunks, &chunk{off: m.next, end: end, buf: make([]byte, end-m.next)})
		m.next = end
	}
}

// stuck reports whether no request runs and none could be started. m.mu
// is held.
func (m *multi) stuck() bool {
	for _, c := range m.chunks {
		if c.busy {
			return false
		}
	}
	return true
}

// leads reports whether this node should stop waiting and fetch the rest
// itself: no peer holds more of the file than it does, and none that holds
// as much ranks above it. m.mu is held.
func (m *multi) leads() bool {
	if m.l.Now().Sub(m.lastProbe) > 2*reprobeEvery || m.probing {
		return false // decide on a fresh look at the peers
	}
	for _, h := range m.holders {
		if h.fails >= maxFails {
			continue
		}
		if h.have > m.pos || m.upstream(h) || (h.have == m.pos && h.rank > m.myRank) {
			return false
		}
	}
	return true
}

// schedule starts a request for every chunk of the window that has none
// and a peer to serve it. m.mu is held.
func (m *multi) schedule() {
	defer m.noteIdle()
	waiting := 0
	for _, c := range m.chunks {
		if c.busy && c.waiting {
			waiting++
		}
	}
	for _, c := range m.chunks {
		if c.busy || c.off+c.n >= c.end {
			continue
		}
		a := c.off + c.n
		h, end, wait := m.pick(a, c.end, waiting > 0)
		if h == nil {
			// Chunks are filled in order of need: a later one must not
			// take the peer an earlier one is waiting for.
			return
		}
		c.busy, c.waiting = true, wait
		if wait {
			waiting++
		}
		h.inflight++
		h.uploads++ // what the peer will say once this request runs
		m.wg.Add(1)
		go m.get(c, h, h.peer, a, end, wait)
	}
}

// noteIdle keeps idleSince: since when the reader has needed bytes with
// no request running. m.mu is held.
func (m *multi) noteIdle() {
	needs := false
	for _, c := range m.chunks {
		if c.busy {
			m.idleSince = time.Time{}
			return
		}
		needs = needs || c.off+c.n < c.end
	}
	if !needs {
		m.idleSince = time.Time{}
	} else if m.idleSince.IsZero() {
		m.idleSince = m.l.Now()
	}
}

// pick chooses the holder for bytes [a, b) (see the rules above) and the
// end of what to ask it for; wait is set when the request waits at the
// peer for bytes it does not hold yet. A second waiting request is not
// started (noWait). m.mu is held.
func (m *multi) pick(a, b int64, noWait bool) (best *holder, end int64, wait bool) {
	now := m.l.Now()
	tier := m.l.Name()
	score := func(h *holder) int64 { return h.uploads + int64(h.inflight)*2 }
	// Among equals, a uniform random one (reservoir sampling): load
	// figures are a second old at best, and a fixed tie-break would send
	// every reader to the same peer.
	ties := 0
	better := func(h *holder) bool {
		switch {
		case best == nil || score(h) < score(best):
			ties = 1
			return true
		case score(h) == score(best):
			ties++
			return rand.IntN(ties) == 0
		}
		return false
	}
	// A node that brings new bytes (from the origin or the swarm) feeds
	// its site through its one frontier place (proxy's serveBlobToPeer):
	// asked for every chunk it holds whenever the relays were busy, it
	// served the whole site (the busiest node of the office benchmark was
	// the one fetching from the origin, 2.6× the mean). It is asked only
	// when no other peer holds byte a or relays bytes to this node, or when
	// this reader has had no request running for starveAfter.
	//
	// This and the parent below hold only while bytes flow: a reader that
	// got none for chainPatience (its parent is stuck, or waits on a stuck
	// peer) asks anyone, the bringer included, until they flow again.
	chain := now.Sub(m.lastByte) < chainPatience
	spare := chain && m.relayed(a, now) && !m.starved(now)
	usable := func(h *holder) bool {
		return h.fails < maxFails && !now.Before(h.until) && h.inflight < m.l.PerPeer && !(spare && h.brings(tier))
	}
	// A relay reads the file from the relay ranked next above it (the
	// first relay from the bringer): what that parent holds it asks of it,
	// and at the frontier it waits there. Each relay then has one reader
	// asking for its one frontier place, the newest bytes flow down a chain
	// in rank order, and every node sends about one copy. Taking a chunk
	// from whichever peer held it whole made a star around the node nearest
	// to the origin (it sent 4.3 copies in the office benchmark), and
	// readers that chose the least loaded upstream took each other's
	// frontier places. Only a parent that failed or was busy sends the
	// reader to the rules below.
	if p := m.rankParent(); chain && p != nil && p.fails < maxFails && !now.Before(p.until) && (m.holds(p) > a || m.growing(p, now)) {
		switch {
		case p.inflight >= m.l.PerPeer:
		case m.holds(p) >= b:
			return p, b, false
		case m.holds(p) > a && (noWait || p.inflight > 0):
			return p, m.holds(p), false
		case !noWait && p.inflight == 0:
			return p, b, true
		}
		return nil, 0, false // it will hold the bytes soon
	}
	if m.parentSoon(now) {
		return nil, 0, false
	}
	for _, h := range m.holders { // rule 1
		if usable(h) && m.holds(h) >= b && better(h) {
			best = h
		}
	}
	if best != nil {
		return best, b, false
	}
	best, ties = nil, 0
	// Else stay with the upstream that served the last chunk there: it
	// keeps its place for this node a moment (proxy's frontierGrace).
	if p := m.parent; p != nil && !noWait && usable(p) && p.inflight == 0 && m.waitable(p, now) && m.holds(p) < b {
		return p, b, true
	}
	// Rules 2 and 3 together: a peer that holds the chunk's start is asked
	// for what it holds; an upstream one may be waited at. The bringer is
	// asked last among equals: its link is busy bringing the bytes.
	score = func(h *holder) int64 {
		s := h.uploads + int64(h.inflight)*2
		if h.brings(tier) {
			s += 2
		}
		return s
	}
	for _, h := range m.holders {
		if !usable(h) || h.inflight > 0 {
			continue
		}
		upstream := m.waitable(h, now)
		if upstream && noWait && m.holds(h) < b {
			continue // a second request waiting at a peer would take a place the first needs
		}
		if (upstream || m.holds(h) > a) && better(h) {
			best = h
		}
	}
	if best == nil {
		return nil, 0, false
	}
	if !m.waitable(best, now) {
		return best, min(b, m.holds(best)), false
	}
	return best, b, m.holds(best) < b
}

// parentWait bounds how long a read across sites, at its start, waits for
// a peer ranked above it that is about to read the file (parentSoon).
const parentWait = 3 * time.Second

// parentSoon reports whether a read across sites should wait for its
// parent to be: at its start, a peer ranked above it said it is about to
// read the file too, and no relay ranked above it reads yet. The sites
// then start in rank order, each at its parent. Taking the newest bytes
// from the site that brings them meanwhile put the lower-ranked sites ahead
// of their parents: for the first 35–50 s of the slow many-sites runs the
// other sites read the leader's bytes side by side at 9–16 Mbit/s each, a
// lag none of them made up (docs/benchmarks-fleet.md). The wait is bounded
// by parentWait from the read's start: a peer that says pending for ever
// costs that once. m.mu is held.
func (m *multi) parentSoon(now time.Time) bool {
	return m.l.Wide && m.soon && now.Sub(m.began) < parentWait && m.rankParent() == nil
}

// chainPatience is how long a reader keeps to its parent and spares the
// bringer while no byte arrives.
const chainPatience = 1500 * time.Millisecond

// starveAfter lets a reader that has had no request running this long ask
// a node that brings new bytes, although relays exist: they are all busy.
const starveAfter = 500 * time.Millisecond

// starved reports whether the reader has needed bytes with no request
// running for starveAfter. m.mu is held.
func (m *multi) starved(now time.Time) bool {
	return !m.idleSince.IsZero() && now.Sub(m.idleSince) >= starveAfter
}

// rankParent is the relay this reader waits at for the frontier: the one
// ranked next above it among the relays it knows (not failed). Nil when no
// relay ranks above it: it waits at a node that brings the bytes. m.mu is
// held.
func (m *multi) rankParent() *holder {
	var p *holder
	for _, h := range m.holders {
		if h.fails >= maxFails || h.complete || h.source != m.l.Name() || h.rank <= m.myRank {
			continue
		}
		if p == nil || h.rank < p.rank {
			p = h
		}
	}
	return p
}

// relayed reports whether a peer other than one bringing new bytes holds
// byte a, or relays bytes to this node (it may be waited at): then no
// bringer needs to serve a. Holders that failed too often do not count.
// m.mu is held.
func (m *multi) relayed(a int64, now time.Time) bool {
	for _, h := range m.holders {
		if h.fails >= maxFails || h.brings(m.l.Name()) {
			continue
		}
		if m.holds(h) > a || m.waitable(h, now) {
			return true
		}
	}
	return false
}

// waitable reports whether this reader may wait at h now: h is upstream,
// and a relay's download has grown lately. m.mu is held.
func (m *multi) waitable(h *holder, now time.Time) bool {
	return m.upstream(h) && (h.brings(m.l.Name()) || m.growing(h, now))
}

// upstream reports whether this reader may wait at h for bytes h does not
// hold yet: h brings new bytes, or relays them and ranks above this node
// (which keeps the waits acyclic). m.mu is held.
func (m *multi) upstream(h *holder) bool {
	return h.brings(m.l.Name()) || (!h.complete && h.source == m.l.Name() && h.rank > m.myRank)
}

// get fills c with bytes [a, end) from h, whose peer p the scheduler read
// under m.mu (a probe round may replace h.peer meanwhile).
func (m *multi) get(c *chunk, h *holder, p Peer, a, end int64, wait bool) {
	defer m.wg.Done()
	n, extra, hdr, err := m.fetchRange(c, p, a, end)
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.broadcast()
	c.busy, c.waiting = false, false
	h.inflight--
	if n > 0 {
		h.used = true
	}
	if len(extra) > 0 {
		c.extra = extra
	}
	if hdr != nil {
		if v, err := strconv.ParseInt(hdr.Get("X-Pkgswarm-Have"), 10, 64); err == nil {
			m.setHave(h, v)
		}
		if hdr.Get("X-Pkgswarm-State") == stateComplete {
			h.complete = true
			m.setHave(h, m.size)
		}
		if v, err := strconv.ParseInt(hdr.Get("X-Pkgswarm-Uploads"), 10, 64); err == nil {
			h.uploads = max(0, v-1) // itself included the request that ended
		}
		if s := hdr.Get("X-Pkgswarm-Source"); s != "" {
			h.source = s
		}
	}
	m.setHave(h, a+n)
	if err == nil {
		h.fails = 0
		if wait {
			m.parent = h
		}
		return
	}
	if m.parent == h {
		m.parent = nil
	}
	if m.ctx.Err() != nil {
		return
	}
	if errors.Is(err, errBusy) {
		h.until = m.l.Now().Add(busyBackoff)
		return
	}
	h.fails++
	h.until = m.l.Now().Add(time.Duration(h.fails) * 500 * time.Millisecond)
	if errors.Is(err, errGone) && h.complete {
		// It said it held the file, then did not serve it.
		m.l.ban(h.peer, fmt.Errorf("lan peer %s announced %s and then failed to serve it: %w", h.peer.URL, m.what, err))
		h.fails = maxFails
	}
	m.l.logDebug("range request failed", "peer", h.peer.URL, "what", m.what, "from", a, "to", end, "err", err)
}

// errBusy: the peer already serves its newest bytes to another peer; ask
// someone else (not a failure).
var errBusy = errors.New("peer busy")

// errGone: the peer answered that it has not (or no longer) the file.
var errGone = errors.New("peer does not have the file")

// fetchRange asks p for [a, end) and copies what arrives into c as it
// arrives. It returns the bytes added, bytes past the file's end the peer
// sent (at most extraTail), and the response header.
func (m *multi) fetchRange(c *chunk, p Peer, a, end int64) (int64, []byte, http.Header, error) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(p, m.what), nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(a, 10)+"-"+strconv.FormatInt(end-1, 10))
	req.Header.Set("X-Pkgswarm-Tier", m.l.Name())
	// The stall timer runs from the request on: a peer that waits for its
	// own upstream longer than stall is given up for this chunk.
	progress := make(chan struct{}, 1)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		t := time.NewTimer(m.stall)
		defer t.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-progress:
				t.Reset(m.stall)
			case <-t.C:
				cancel(fmt.Errorf("no byte for %v", m.stall))
				return
			}
		}
	}()
	resp, err := m.l.Client.Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil && m.ctx.Err() == nil {
			err = c
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	start := int64(0)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr, err := fetch.ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.First != a {
			return 0, nil, resp.Header, fmt.Errorf("unusable Content-Range %q for bytes %d-%d (%v)", resp.Header.Get("Content-Range"), a, end-1, err)
		}
		start = a
	case http.StatusOK:
		// The whole file (a peer that ignores Range): skip to a.
	case http.StatusNotFound, http.StatusRequestedRangeNotSatisfiable:
		return 0, nil, resp.Header, fmt.Errorf("%s: %w", resp.Status, errGone)
	case http.StatusServiceUnavailable:
		if resp.Header.Get("X-Pkgswarm-Busy") != "" {
			return 0, nil, resp.Header, errBusy
		}
		return 0, nil, resp.Header, fmt.Errorf("%s", resp.Status)
	default:
		return 0, nil, resp.Header, fmt.Errorf("%s", resp.Status)
	}
	body := &progressReader{r: resp.Body, ch: progress}
	if start < a {
		if _, err := io.CopyN(io.Discard, body, a-start); err != nil {
			return 0, nil, resp.Header, m.cause(ctx, err)
		}
	}
	var n int64
	buf := make([]byte, 64<<10)
	for a+n < end {
		k, rerr := body.Read(buf[:min(int64(len(buf)), end-a-n)])
		if k > 0 {
			m.mu.Lock()
			copy(c.buf[a-c.off+n:], buf[:k])
			c.n += int64(k)
			n += int64(k)
			m.lastByte = m.l.Now()
			m.broadcast()
			m.mu.Unlock()
		}
		if rerr == io.EOF {
			if a+n < end {
				return n, nil, resp.Header, fmt.Errorf("sent %d of bytes %d-%d", n, a, end-1)
			}
			break
		}
		if rerr != nil {
			return n, nil, resp.Header, m.cause(ctx, rerr)
		}
	}
	if end == m.size {
		// A peer that sends more than the file has lied about it: pass a
		// little of it on, so that the pipeline sees it and blames us.
		extra, _ := io.ReadAll(io.LimitReader(body, extraTail))
		return n, extra, resp.Header, nil
	}
	return n, nil, resp.Header, nil
}

func (m *multi) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && m.ctx.Err() == nil && !errors.Is(c, context.Canceled) {
		return fmt.Errorf("%w (%v)", c, err)
	}
	return err
}

type progressReader struct {
	r  io.Reader
	ch chan struct{}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		select {
		case p.ch <- struct{}{}:
		default:
		}
	}
	return n, err
}

// reprobe asks every live peer again and merges what they hold.
func (m *multi) reprobe() {
	defer m.wg.Done()
	results, _ := m.l.probe(m.ctx, m.l.live(m.ctx, m.what), m.what, m.l.Budget, 0)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.merge(results)
	m.probing = false
	m.lastProbe = m.l.Now()
	m.broadcast()
}

// contributors lists the peers whose bytes this reader returned.
func (m *multi) contributors() (used []Peer, complete []Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range m.holders {
		if h.used {
			used = append(used, h.peer)
			if h.complete {
				complete = append(complete, h.peer)
			}
		}
	}
	return used, complete
}

// Close implements io.Closer: it stops every request and waits for them.
func (m *multi) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.broadcast()
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// multiToken names a multi-source body in fetch.Body.Peer, so that
// Penalize finds its contributors.
const multiToken = "multi#"

func isMultiToken(who string) bool { return strings.HasPrefix(who, multiToken) }
