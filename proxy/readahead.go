package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/target"
)

// Read-ahead of pipelined requests. apt sends up to ten requests on a
// connection before it reads the first answer (Acquire::http::Pipeline-Depth,
// RFC 9112 §9.3.2); net/http answers them one after the other, so each
// file's origin round trip would start only when the previous answer is
// done. A connection wrapped by Readahead looks at the request heads as the
// server reads them off the socket and starts, for each GET the client has
// already sent, the same resolution and download the handler will join when
// it gets to it. Only requests the client actually sent are started: nothing
// is fetched speculatively.

// maxScan bounds the bytes of request heads a connection looks through
// without finding the end of one (then it stops looking: such a client is
// not pipelining GETs).
const maxScan = 64 << 10

// maxAhead bounds the requests of one connection started ahead at once.
const maxAhead = 16

// Readahead wraps a listener so that the requests each connection
// pipelines are started as soon as they arrive (see Server.Prefetch). The
// http.Server serving it must use ConnContext, which tells a connection
// when the server has answered a request: only requests queued behind one
// not yet answered are started ahead (a client that does not pipeline costs
// nothing more).
func (s *Server) Readahead(ln net.Listener) net.Listener { return &raListener{Listener: ln, s: s} }

type raKey struct{}

// ConnContext is the http.Server.ConnContext of a server whose listener is
// wrapped by Readahead.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*raConn); ok {
		return context.WithValue(ctx, raKey{}, rc)
	}
	return ctx
}

// answered records that the server finished a request of the connection
// behind ctx.
func answered(ctx context.Context) {
	if rc, ok := ctx.Value(raKey{}).(*raConn); ok {
		rc.mu.Lock()
		rc.answered++
		rc.mu.Unlock()
	}
}

type raListener struct {
	net.Listener
	s *Server
}

func (l *raListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newRAConn(c, l.s), nil
}

// raConns numbers the connections (fetch.Line.Conn).
var raConns atomic.Uint64

func newRAConn(c net.Conn, s *Server) *raConn {
	return &raConn{Conn: c, s: s, id: raConns.Add(1), remote: c.RemoteAddr().String(), sem: make(chan struct{}, maxAhead),
		wsem: make(chan struct{}, 1), abort: make(chan struct{}, 1), closed: make(chan struct{}), ends: []int64{0}}
}

// raConn is a connection whose incoming bytes are scanned for request heads,
// which are started ahead when queued behind one not yet answered, and which
// the quick lane answers itself when they are hits it can take (quick.go).
// net/http's writes pass through untouched; ReadFrom reaches the TCP
// connection's, so a hit from a blob file stays a sendfile.
type raConn struct {
	net.Conn
	s      *Server
	id     uint64 // the connection's fetch.Line.Conn
	remote string
	sem    chan struct{} // bounds the requests started ahead
	wsem   chan struct{} // held while the quick lane writes; taken for good by Close
	abort  chan struct{} // a token when a read deadline in the past was set
	closed chan struct{} // closed by Close
	once   sync.Once
	// startFn, if set, replaces start (tests).
	startFn func(uri string, seq int)

	rmu     sync.Mutex  // serializes reads; protects the fields below up to mu
	rbuf    []byte      // the read buffer, allocated on first use
	pending []byte      // bytes read from the connection, not yet handed out
	pbuf    []byte      // pending's array, reused once pending is empty
	hbuf    []byte      // the quick lane's answer head, reused
	qarr    [2][]byte   // the quick lane's head and body
	qbufs   net.Buffers // over qarr, for one writev (WriteTo consumes it)
	rerr    error       // the connection's error, for the read after pending
	given   int64       // stream offset of pending[0]: bytes handed to net/http or answered
	// ends are the stream offsets at which request heads start: 0, then
	// the end of every head seen, in order, from the one at or before
	// given. Kept until scanning stops (a body, a tunnel).
	ends     []int64
	rdWindow atomic.Int64 // the read timeout net/http set last, as a duration (0: none)

	mu       sync.Mutex               // protects the fields below
	ahead    map[string]*fetch.Flight // downloads started ahead, by request URI, until their turn
	buf      []byte                   // bytes read but not yet seen to end a head
	scanned  int64                    // stream offset of the end of buf
	off      bool                     // scanning stopped (a body, a tunnel, or no head end in maxScan)
	seen     int                      // request heads seen
	answered int                      // requests the server (or the quick lane) has finished
}

// readSize is what one read from the connection takes in. net/http reads a
// request through a 4 KiB buffer and, while a handler runs, one byte in the
// background; every read goes through rbuf, so that the heads behind are
// seen (started ahead) and can be answered by the quick lane.
const readSize = 4 << 10

// Read hands net/http the bytes of the connection. When net/http asks for
// more than the single byte of its background read, it is between requests
// (it has finished writing every answer): then a complete head that the
// quick lane can answer is answered here, and never reaches net/http. Bytes
// are handed out up to the end of the next head at most, and the background
// read (one byte, while a handler runs) gets none while the client
// pipelines: it only learns that the client went away. So every head
// net/http has not started is still here for the lane.
func (c *raConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 1 && !c.scanOff() {
		return c.backgroundRead()
	}
	quick := false // answered a request since net/http last asked
	for {
		if len(c.pending) > 0 {
			head, aligned := c.nextHead()
			if len(p) > 1 && aligned && head == nil && c.rerr == nil && len(c.pending) < maxScan && !c.scanOff() {
				// A head cut by the network: wait for its end, as
				// net/http would, so the lane can still take it.
				if _, err := c.readMore(); err != nil {
					c.rerr = err
				}
				continue
			}
			if len(p) > 1 && aligned {
				if uri, ok := quickURI(head); ok {
					if done, err := c.answerQuick(uri, len(head)); err != nil {
						return 0, err
					} else if done {
						quick = true
						continue
					}
				}
			}
			return c.handOut(p), nil
		}
		if quick {
			// net/http's read timeout was set for the request it waits
			// for: keep it for the next one.
			if w := c.rdWindow.Load(); w > 0 {
				c.Conn.SetReadDeadline(time.Now().Add(time.Duration(w)))
			}
			quick = false
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads what the connection has into pending. An error that comes
// with bytes is kept for the read after them.
func (c *raConn) fill() error {
	if c.rerr != nil {
		err := c.rerr
		c.rerr = nil
		return err
	}
	n, err := c.readMore()
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	if err != nil {
		c.rerr = err
	}
	return nil
}

// readMore reads once from the connection, scans what came and appends it
// to pending.
func (c *raConn) readMore() (int, error) {
	if c.rbuf == nil {
		c.rbuf = make([]byte, readSize)
	}
	n, err := c.Conn.Read(c.rbuf)
	if n > 0 {
		c.scan(c.rbuf[:n])
		if len(c.pending) == 0 {
			c.pending = c.pbuf[:0] // nothing refers to what it held
		}
		c.pending = append(c.pending, c.rbuf[:n]...)
		if cap(c.pending) > cap(c.pbuf) {
			c.pbuf = c.pending[:0:cap(c.pending)]
		}
	}
	return n, err
}

// backgroundRead is net/http's one-byte read while a handler runs, which
// tells it whether the client went away. It keeps reading, so that every
// request the client pipelines meanwhile is seen (and started ahead) as it
// arrives, but hands out none of those bytes: they are kept for the lane or
// net/http's next read. It ends when net/http ends it (a deadline in the
// past, once the handler is done), or with the connection's error when the
// client sent nothing more. At most maxScan bytes are kept; past that it
// only waits.
func (c *raConn) backgroundRead() (int, error) {
	for len(c.pending) < maxScan && c.rerr == nil {
		n, err := c.readMore()
		switch {
		case err == nil:
		case n == 0 && len(c.pending) == 0, isTimeout(err):
			return 0, err
		default:
			c.rerr = err // for the read after the bytes kept
		}
	}
	select {
	case <-c.abort:
		return 0, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *raConn) scanOff() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

// nextHead returns the head at the start of pending when pending starts a
// request head that is complete; aligned reports that pending starts a head
// (no byte of it handed out).
func (c *raConn) nextHead() (head []byte, aligned bool) {
	for len(c.ends) > 0 && c.ends[0] < c.given {
		c.ends = c.ends[1:]
	}
	if len(c.ends) == 0 || c.ends[0] != c.given {
		return nil, false
	}
	if len(c.ends) < 2 || c.ends[1]-c.given > int64(len(c.pending)) {
		return nil, true
	}
	return c.pending[:c.ends[1]-c.given], true
}

// handOut copies pending bytes into p, up to the end of the next head seen.
func (c *raConn) handOut(p []byte) int {
	lim := len(c.pending)
	for _, e := range c.ends {
		if e > c.given {
			lim = min(lim, int(e-c.given))
			break
		}
	}
	n := copy(p[:min(len(p), lim)], c.pending)
	c.pending = c.pending[n:]
	c.given += int64(n)
	return n
}

// answerQuick answers the head of n bytes at the start of pending, a GET of
// uri, if the quick lane can (done); the head is then consumed. An error is
// the connection's: net/http gets it and closes the connection.
func (c *raConn) answerQuick(req []byte, n int) (done bool, err error) {
	if !c.s.quickServes(c.remote) || c.startedAhead(req) {
		return false, nil
	}
	start := time.Now()
	uri, t, ok := c.s.quickTarget(req)
	if !ok {
		return false, nil
	}
	head, body, ok := c.s.quick(c.hbuf[:0], uri, t)
	if !ok {
		return false, nil
	}
	c.hbuf = head
	select {
	case c.wsem <- struct{}{}:
	default:
		return false, net.ErrClosed
	}
	c.s.quickDone(uri, c.remote, len(body), start)
	c.qarr = [2][]byte{head, body}
	c.qbufs = c.qarr[:]
	_, err = c.qbufs.WriteTo(c.Conn)
	c.qarr[1] = nil // not kept past the write: the memory cache may drop it
	<-c.wsem
	if err != nil {
		return false, err
	}
	c.pending = c.pending[n:]
	c.given += int64(n)
	c.mu.Lock()
	c.answered++
	c.mu.Unlock()
	return true, nil
}

// SetReadDeadline remembers the read timeout net/http sets (the lane keeps
// it for the requests it answers meanwhile) and sets it.
func (c *raConn) SetReadDeadline(t time.Time) error {
	c.window(t)
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and the connection's SetWriteDeadline.
func (c *raConn) SetDeadline(t time.Time) error {
	c.window(t)
	return c.Conn.SetDeadline(t)
}

func (c *raConn) window(t time.Time) {
	switch d := time.Until(t); {
	case t.IsZero():
		c.rdWindow.Store(0)
	case d > 0:
		c.rdWindow.Store(int64(d))
	default:
		// A deadline in the past aborts a read now (net/http's end of
		// its background read); it is not a timeout to keep.
		select {
		case c.abort <- struct{}{}:
		default:
		}
		return
	}
	select { // a later deadline: an abort not taken is stale
	case <-c.abort:
	default:
	}
}

// closeGrace bounds how long Close waits for an answer the quick lane is
// writing (so that a graceful shutdown, which closes connections it sees
// idle, does not cut it short).
const closeGrace = 5 * time.Second

// Close closes the connection once the quick lane is not writing. Only the
// first Close waits: net/http closes a connection it is done with, and a
// server shutting down may close it again.
func (c *raConn) Close() error {
	first := false
	c.once.Do(func() { first = true; close(c.closed) })
	if first {
		t := time.NewTimer(closeGrace)
		defer t.Stop()
		select {
		case c.wsem <- struct{}{}:
		case <-t.C:
		}
	}
	return c.Conn.Close()
}

// ReadFrom hands r to the underlying connection's ReadFrom, where net/http's
// answer from a blob file becomes a sendfile (corked when it is a lone large
// body, cork.go).
func (c *raConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{c.Conn}, r)
	}
	if uncork := corkLoneLargeBody(c.Conn, r); uncork != nil {
		defer uncork()
	}
	return rf.ReadFrom(r)
}

// scan appends b to the unscanned bytes, records where each complete head
// ends (for the quick lane), and starts every complete GET head queued
// behind a request the server has not answered yet (a head with no
// unanswered request before it is the one the server handles next itself).
// Scanning stops at a request with a body or a CONNECT: the bytes that
// follow are not heads.
func (c *raConn) scan(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return
	}
	c.buf = append(c.buf, b...)
	c.scanned += int64(len(b))
	for {
		end := bytes.Index(c.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(c.buf) > maxScan {
				c.off, c.buf = true, nil
			}
			return
		}
		method, uri, body := parseHead(c.buf[:end+4])
		if body || method == nil {
			// A request with a body (or no request at all): the bytes that
			// follow are not heads. Stop looking on this connection.
			c.off, c.buf = true, nil
			return
		}
		c.seen++
		if string(method) == http.MethodConnect {
			// A tunnel follows: its bytes are not heads, and the quick
			// lane must never answer into it.
			c.off, c.buf = true, nil
			return
		}
		// What follows the head moves to the front of the buffer, which is
		// kept: scan runs on every request and allocates nothing of its own.
		rest := len(c.buf) - (end + 4)
		c.ends = append(c.ends, c.scanned-int64(rest))
		if c.seen-c.answered > 1 && string(method) == http.MethodGet {
			if c.startFn != nil {
				c.startFn(string(uri), c.seen)
			} else {
				c.start(string(uri), c.seen)
			}
		}
		c.buf = c.buf[:copy(c.buf, c.buf[end+4:])]
	}
}

// parseHead reads a request head's method and URI (slices of head), and
// whether a body follows it. It allocates nothing: it runs on every request.
func parseHead(head []byte) (method, uri []byte, body bool) {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return nil, nil, false
	}
	m, after, ok1 := bytes.Cut(line, []byte(" "))
	u, proto, ok2 := bytes.Cut(after, []byte(" "))
	if !ok1 || !ok2 || !plainToken(m) || len(u) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || bytes.ContainsAny(proto, " ") {
		return nil, nil, false
	}
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			body = true
		case bytes.EqualFold(name, []byte("Content-Length")) && !bytes.Equal(value, []byte("0")):
			body = true
		}
	}
	return m, u, body
}

// start begins the request uri, the seq-th head of the connection, ahead,
// bounded per connection; a request beyond the bound is not started ahead
// (the server will handle it in turn).
func (c *raConn) start(uri string, seq int) {
	if c.s.heldSmallURI(uri, c.remote) {
		return // nothing to fetch: the quick lane answers it
	}
	select {
	case c.sem <- struct{}{}:
	default:
		return
	}
	// Marked at once (c.mu is held): the quick lane leaves a request
	// started ahead to the handler, which answers it from its download.
	if c.ahead == nil {
		c.ahead = map[string]*fetch.Flight{}
	}
	c.ahead[uri] = nil
	go func() {
		defer func() { <-c.sem }()
		fl := c.s.Prefetch(c.remote, uri, fetch.Line{Conn: c.id, Seq: seq})
		c.mu.Lock()
		if _, waiting := c.ahead[uri]; waiting && fl != nil {
			c.ahead[uri] = fl
		}
		c.mu.Unlock()
	}()
}

// startedAhead reports whether the request uri was started ahead and not
// yet taken by the handler.
func (c *raConn) startedAhead(uri []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.ahead[string(uri)]
	return ok
}

// lineOf returns where the request the server is handling on the
// connection behind ctx stands in that connection's pipeline: requests are
// handled in order, so it is the one after those already answered.
func lineOf(ctx context.Context) fetch.Line {
	rc, ok := ctx.Value(raKey{}).(*raConn)
	if !ok {
		return fetch.Line{}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return fetch.Line{Conn: rc.id, Seq: rc.answered + 1}
}

// takeAhead returns the download started ahead for the request uri of the
// connection behind ctx, if one was, and forgets it: when the request's
// turn comes the server answers from that download, finished or not, so
// the answer names the tier that served it (not "cache" because the file
// arrived while the request before it was being answered).
func takeAhead(ctx context.Context, uri string) *fetch.Flight {
	rc, ok := ctx.Value(raKey{}).(*raConn)
	if !ok {
		return nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	fl := rc.ahead[uri]
	delete(rc.ahead, uri)
	return fl
}

// prefetchTimeout bounds the resolution a request started ahead waits for
// (roots, index parses); the download it starts outlives it.
const prefetchTimeout = 2 * time.Minute

// Prefetch starts, for a GET of uri from a client at remoteAddr, what
// ServeHTTP would do before answering: the same checks (allowed client,
// repository file, allowed port), the trust resolution, and the one
// download of the file. It answers nothing: when the server gets to the
// request, it finds the download it returns (nil when the file is held or
// the request is refused) or the file held. line is where the request
// stands in its client's pipeline (fetch.Line).
func (s *Server) Prefetch(remoteAddr, uri string, line fetch.Line) *fetch.Flight {
	if !s.clientAllowed(remoteAddr) {
		return nil
	}
	if ownEndpoint(uri) {
		return nil
	}
	t, err := target.Parse(uri)
	if err != nil || !s.portAllowed(t.Port) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), prefetchTimeout)
	defer cancel()
	plan, err := s.trust.Resolve(ctx, t)
	if err != nil || plan.Request == nil {
		return nil
	}
	plan.Request.Line = line
	res, err := s.fetch.Get(ctx, plan.Request)
	if err != nil {
		return nil
	}
	return res.Flight
}
