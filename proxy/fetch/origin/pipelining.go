package origin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// HTTP/1.1 pipelining to origins (RFC 9112 9.3.2): pipeTransport keeps as
// many GETs in flight to one origin host as the node has been asked for,
// over at most maxConns kept-alive connections, so that a far origin costs a
// round trip per connection rather than per file. It is the RoundTripper of
// the Client's http.Client, so redirects still go through the policy's
// CheckRedirect and every answer through interpret.
//
// Its safeguards follow apt's http method (methods/basehttp.cc), which has
// pipelined to Debian mirrors for two decades:
//
//   - A new connection carries one request; it is pipelined only after its
//     first answer proved HTTP/1.1 with keep-alive. An HTTP/1.0 answer, a
//     "Connection: close" on a file among a connection's first answers, a
//     connection closed under a pipeline early in its life, or an answer that
//     is not the one asked for puts the host off pipelining for
//     pipelineBackoff: its requests then go one at a time per connection.
//   - Only a GET whose answer can be recognised is sent behind another one:
//     a file with an expected SHA-256 and size (an answer of another size, a
//     206 to a request without Range or a 304 to one without a condition,
//     is a broken pipeline: the connection is dropped and the request sent
//     again, unpipelined). A GET without such an expectation goes out only
//     on a connection with nothing in flight, so its answer is the next one.
//   - Answers are read in order, each body to its end (or drained, bounded
//     by maxDrain and drainTimeout, when its reader stops early or gave up,
//     else the connection is dropped) before the next answer is read.
//   - When a connection ends with requests unanswered (the server's
//     keep-alive limit or idle timeout, a drop), they are sent again on
//     another connection, at most maxResends times each: a GET is
//     idempotent, and no byte of their answers was handed out.
//
// Only plain http:// GETs go through the pool, every connection dialed by
// the guarded dialer (the egress policy). https:// requests and anything
// that is not a body-less GET go to the net/http Transport unchanged (it
// speaks HTTP/2 where the origin offers it, which multiplexes by itself).
type pipeTransport struct {
	dial     func(ctx context.Context, network, addr string) (net.Conn, error) // the guarded dialer
	next     *http.Transport                                                   // https origins and non-GETs
	maxConns int
	depth    int

	headerTimeout  time.Duration // 0: none
	idleTimeout    time.Duration
	maxHeaderBytes int64

	mu    sync.Mutex       // protects hosts and every host's, call's and pconn's shared state
	hosts map[string]*host // by host.key
}

const (
	// DefaultPipelineDepth is how many requests one origin connection
	// carries at once when pipelining: apt's Acquire::http::Pipeline-Depth is
	// 10.
	DefaultPipelineDepth = 10
	// pipelineBackoff is how long a host whose pipeline broke is sent one
	// request per connection at a time.
	pipelineBackoff = 10 * time.Minute
	// minAnswers is how many answers a connection gives before its close is
	// taken as a keep-alive limit rather than a server that cannot pipeline
	// (apt: PIPELINE_MIN_SUCCESSFUL_ANSWERS_TO_CONTINUE).
	minAnswers = 3
	// maxResends bounds how often one request is sent again after its
	// connection ended without answering it.
	maxResends = 3
	// maxDrain and drainTimeout bound what is read of an answer nobody reads
	// any more, to keep its connection for the answers behind it.
	maxDrain     = 256 << 10
	drainTimeout = 2 * time.Second
	// maxAhead bounds the expected bytes queued on a connection that a new
	// request is pipelined behind: past it, the request waits for the first
	// connection to free up instead of behind one large file, unless, in
	// order, it waits there only for its own client (pconn.behindOwn).
	maxAhead = 4 << 20
	// probeKeepBehind is how many bytes ahead on a connection, in the
	// probe's spread phase, keep a request behind a file its own client
	// asked for first (spread.go, host.keepBehindOwn).
	probeKeepBehind = 1 << 20
	// probeKeepRTT is the round trip from which that holds: nearer, the
	// link's idle round trip costs next to nothing, and the two connections
	// of an origin that paces each one are better used.
	probeKeepRTT = 10 * time.Millisecond
	// unknownSize is what a request of unknown size counts for in maxAhead.
	unknownSize = 1 << 20
	// defaultMaxHeaderBytes bounds an answer's status line and headers (and
	// any 1xx before it), as net/http's server bounds a request's (its
	// client's default, 10 MiB, is more than any origin needs).
	defaultMaxHeaderBytes = 1 << 20
)

// errPipelineBroken is wrapped by the error of a request whose connection
// broke its pipeline: it is sent again unpipelined.
var errPipelineBroken = errors.New("the origin broke the HTTP pipeline")

// host is one http:// origin (host, port): its connections and the
// requests waiting for one. Protected by pipeTransport.mu.
type host struct {
	key, addr string

	conns      []*pconn // open or dialing; at most maxConns
	queue      []*call  // waiting for a connection, in order
	noPipeline time.Time
	probe      spreadProbe   // in order on one connection, or spread (spread.go)
	rtt        time.Duration // quickest connect-to-first-answer; 0 until one
	read       atomic.Int64  // body bytes read from all its connections
}

// call is one request through the pool.
type call struct {
	req     *http.Request
	ctx     context.Context
	checked bool       // the answer can be recognised (expected size): may be pipelined
	size    int64      // expected file size; -1 unknown
	line    fetch.Line // where it stands in its client's pipeline (zero: nowhere)
	ch      chan callResult

	// Protected by pipeTransport.mu.
	h         *host
	pc        *pconn
	state     callState
	pipelined bool // written behind an answer still outstanding on its connection
	gone      bool // the caller stopped waiting (its context ended)
	resends   int
}

type callState int

const (
	callQueued   callState = iota // waiting in host.queue
	callAssigned                  // on a connection, not yet written
	callWriting                   // being written
	callWritten                   // written, its answer not yet read
	callAnswered                  // its answer's header was read
	callDone                      // finished (result sent, or dropped)
)

type callResult struct {
	resp *http.Response
	err  error
}

// expectKey carries a request's expected size in its context (set by Fetch).
type expectKey struct{}

// lineKey carries a pipelinable request's fetch.Line in its context (set by
// Fetch).
type lineKey struct{}

func newPipeTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), tr *http.Transport, maxConns, depth int) *pipeTransport {
	t := &pipeTransport{
		dial:           dial,
		next:           tr,
		maxConns:       maxConns,
		depth:          depth,
		headerTimeout:  tr.ResponseHeaderTimeout,
		idleTimeout:    tr.IdleConnTimeout,
		maxHeaderBytes: tr.MaxResponseHeaderBytes,
		hosts:          map[string]*host{},
	}
	if t.idleTimeout <= 0 {
		t.idleTimeout = 90 * time.Second
	}
	if t.maxHeaderBytes <= 0 {
		t.maxHeaderBytes = defaultMaxHeaderBytes
	}
	return t
}

// RoundTrip sends a plain http:// GET through the pool, anything else
// through the net/http Transport.
func (t *pipeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Body != nil && req.Body != http.NoBody || req.URL.Scheme != "http" || req.URL.Host == "" {
		return t.next.RoundTrip(req)
	}
	name := strings.ToLower(req.URL.Hostname())
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	addr := net.JoinHostPort(name, port)
	key := addr

	c := &call{req: req, ctx: req.Context(), size: -1, ch: make(chan callResult, 1)}
	if n, ok := req.Context().Value(expectKey{}).(int64); ok && n >= 0 {
		c.checked, c.size = true, n
		c.line, _ = req.Context().Value(lineKey{}).(fetch.Line)
	}

	t.mu.Lock()
	h := t.hosts[key]
	if h == nil {
		h = &host{key: key, addr: addr}
		t.hosts[key] = h
	}
	c.h = h
	h.queue = append(h.queue, c)
	t.dispatchLocked(h)
	t.mu.Unlock()

	select {
	case r := <-c.ch:
		return r.resp, r.err
	case <-c.ctx.Done():
	}
	t.mu.Lock()
	select {
	case r := <-c.ch: // answered meanwhile: the body's reads see the context
		t.mu.Unlock()
		return r.resp, r.err
	default:
	}
	t.abandonLocked(c)
	t.mu.Unlock()
	return nil, context.Cause(c.ctx)
}

// abandonLocked takes c out of the pool when its caller stopped waiting: a
// request not yet written is forgotten; the answer to one written is read
// and dropped when it comes (see pconn.readLoop).
func (t *pipeTransport) abandonLocked(c *call) {
	c.gone = true
	switch c.state {
	case callQueued:
		h := c.h
		if i := slices.Index(h.queue, c); i >= 0 {
			h.queue = slices.Delete(h.queue, i, i+1)
		}
		c.state = callDone
	case callAssigned:
		pc := c.pc
		if i := slices.Index(pc.inflight, c); i >= 0 {
			pc.inflight = slices.Delete(pc.inflight, i, i+1)
		}
		c.state = callDone
		pc.idleCheckLocked()
		t.dispatchLocked(pc.h)
	}
}

// send delivers c's result once.
func (c *call) send(r callResult) {
	c.state = callDone
	c.ch <- r
}

// dispatchLocked gives waiting requests to connections, in order. While
// the host's requests go in order (spread.go), a request whose answer can be
// recognised is pipelined behind the others on the connection they are
// queued on, and waits for a connection still proving itself rather than
// open another. Otherwise, and when that connection is full: an idle
// connection first, else a new one while the host has fewer than maxConns
// (each new connection takes one request until its first answer), else, for
// a request whose answer can be recognised, the proven connection with room
// in its pipeline and the fewest expected bytes ahead. In the probe's spread
// phase a request its client asked behind a large file of its own goes
// behind that file first (host.keepBehindOwn). The first request
// that must wait stops the rest (first come, first served: a request that
// may not be pipelined gets the next idle connection).
func (t *pipeTransport) dispatchLocked(h *host) {
	dialing := 0
	for _, pc := range h.conns {
		if pc.nc == nil {
			dialing++
		}
	}
	now := time.Now()
	pipelining := now.After(h.noPipeline)
	ordered := pipelining && t.depth >= 2 && h.ordered(now)
	maxConns := t.maxConns
	if h.probe.phase == probeMany {
		maxConns = min(maxConns, probeConns)
	}
	var waiting []*call
	for i, c := range h.queue {
		if ordered {
			if pc := t.pipelineConn(h, c, pipelining, true); pc != nil {
				pc.assignLocked(c)
				continue
			}
		}
		if !ordered && h.probe.phase == probeMany {
			if pc := t.keepBehindOwn(h, c, pipelining); pc != nil {
				pc.assignLocked(c)
				continue
			}
		}
		if pc := h.idleConn(); pc != nil {
			pc.assignLocked(c)
			continue
		}
		if dialing > 0 {
			dialing-- // the connection being dialed takes it
			waiting = append(waiting, c)
			continue
		}
		if ordered && c.checked && h.proving() {
			waiting = append(waiting, c)
			continue
		}
		if len(h.conns) < maxConns {
			t.startDialLocked(h, c)
			waiting = append(waiting, c)
			continue
		}
		if pc := t.pipelineConn(h, c, pipelining, false); pc != nil {
			pc.assignLocked(c)
			continue
		}
		waiting = append(waiting, h.queue[i:]...)
		break
	}
	h.queue = waiting
	if len(h.queue) == 0 && len(h.conns) == 0 && time.Now().After(h.noPipeline) {
		delete(t.hosts, h.key)
	}
}

// idleConn returns an open connection with nothing in flight.
func (h *host) idleConn() *pconn {
	for _, pc := range h.conns {
		if pc.nc != nil && !pc.closing && len(pc.inflight) == 0 {
			return pc
		}
	}
	return nil
}

// pipelineConn returns the connection c may be pipelined on, or nil: a
// proven one with room and at most maxAhead bytes ahead, the one with the
// fewest bytes ahead or, in order (busiest), the most (the one the host's
// requests are queued on). In order, a connection that carries a request
// c's client asked earlier on c's line, followed only by requests of that
// line, takes c however many bytes are ahead: the client reads that answer
// first, so c would reach it no sooner from another connection, only be
// done early — and the link would then idle for a round trip at the large
// file's end while the client, given every answer at once, sends its next
// requests (apt pipelining to the origin itself keeps the link busy there).
func (t *pipeTransport) pipelineConn(h *host, c *call, pipelining, busiest bool) *pconn {
	if !t.pipelinable(c, pipelining) {
		return nil
	}
	var best *pconn
	var bestAhead int64
	for _, pc := range h.conns {
		if !pc.hasRoom(t.depth) {
			continue
		}
		ahead := pc.aheadLocked()
		if ahead > maxAhead && !(busiest && pc.behindOwn(c)) {
			continue
		}
		if best == nil || busiest && ahead > bestAhead || !busiest && ahead < bestAhead {
			best, bestAhead = pc, ahead
		}
	}
	return best
}

// keepBehindOwn returns the connection, in the probe's spread phase, that c
// waits on for its client's sake, or nil: for a host at least probeKeepRTT
// away, a proven one with room that carries a file c's client asked for
// before c with more than probeKeepBehind bytes still ahead
// (pconn.behindOwn). Spread over two connections, the requests a
// client pipelined behind a large file were done while the file still came
// and held the client's pipeline slots, which it frees only as it reads the
// answers in order: at the file's end it had every answer at once, the link
// had nothing left to carry, and it idled for a round trip while the client
// sent its next requests (25–80 ms per cold run from an origin 40 ms away:
// docs/benchmarks.md). Behind a smaller file, or another client's, requests
// still spread, and the probe measures both connections. From an origin
// nearby, where that round trip costs next to nothing, they spread too: one
// paced per connection on loopback was fetched up to 9 % slower with them
// kept behind (the same document).
func (t *pipeTransport) keepBehindOwn(h *host, c *call, pipelining bool) *pconn {
	if !t.pipelinable(c, pipelining) || h.rtt < probeKeepRTT {
		return nil
	}
	for _, pc := range h.conns {
		if pc.hasRoom(t.depth) && pc.aheadLocked() > probeKeepBehind && pc.behindOwn(c) {
			return pc
		}
	}
	return nil
}

// pipelinable reports whether c may be pipelined behind other requests:
// the host pipelines (pipelining), so does the transport, and c's answer can
// be recognised.
func (t *pipeTransport) pipelinable(c *call, pipelining bool) bool {
	return pipelining && c.checked && t.depth >= 2
}

// hasRoom reports whether pc is open, proven and has room in a pipeline of
// depth for one more request.
func (pc *pconn) hasRoom(depth int) bool {
	return pc.nc != nil && !pc.closing && pc.proven && len(pc.inflight) < depth
}

// behindOwn reports whether c may wait behind everything on pc for its
// client's sake: pc carries a request asked before c on c's client line,
// and only requests of that line follow it (they reach the pool out of
// their order: each is resolved on its own).
func (pc *pconn) behindOwn(c *call) bool {
	for i := len(pc.inflight) - 1; i >= 0 && c.line.Conn != 0; i-- {
		l := pc.inflight[i].line
		if l.Conn != c.line.Conn {
			return false
		}
		if l.Before(c.line) {
			return true
		}
	}
	return false
}

// startDialLocked opens a new connection to h; c is the request it was
// opened for (it gets the dial's error if it is still waiting then).
func (t *pipeTransport) startDialLocked(h *host, c *call) {
	pc := &pconn{t: t, h: h, wake: make(chan struct{}, 1), closed: make(chan struct{})}
	h.conns = append(h.conns, pc)
	// The dial serves whichever request is waiting when it is done: it
	// outlives the request that started it, within a bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 30*time.Second)
	go func() {
		defer cancel()
		nc, err := t.dial(ctx, "tcp", h.addr)
		t.mu.Lock()
		defer t.mu.Unlock()
		if err != nil {
			h.conns = slices.DeleteFunc(h.conns, func(p *pconn) bool { return p == pc })
			if i := slices.Index(h.queue, c); i >= 0 {
				h.queue = slices.Delete(h.queue, i, i+1)
				c.send(callResult{err: err})
			}
			t.dispatchLocked(h)
			return
		}
		pc.start(nc)
		t.dispatchLocked(h)
	}()
}

// CloseIdleConnections closes the pool's connections with nothing in
// flight and the net/http Transport's idle ones.
func (t *pipeTransport) CloseIdleConnections() {
	t.mu.Lock()
	for _, h := range t.hosts {
		for _, pc := range slices.Clone(h.conns) {
			if pc.nc != nil && len(pc.inflight) == 0 {
				pc.dieLocked(nil)
			}
		}
	}
	t.mu.Unlock()
	t.next.CloseIdleConnections()
}
