package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// pconn is one connection of the pool: a writer goroutine sends the
// requests assigned to it in order, a reader goroutine reads their answers
// in the same order and hands each to its caller, waiting until the body
// was read to its end (or drained, or the connection dropped) before it
// reads the next.
type pconn struct {
	t *pipeTransport
	h *host

	nc      net.Conn  // nil while dialing; set once, under t.mu
	started time.Time // when nc was set
	lr      *limitReader
	br      *bufio.Reader
	bw      *bufio.Writer
	wake    chan struct{} // tells the writer there is something to write
	closed  chan struct{} // closed when the connection dies

	// Protected by t.mu.
	inflight  []*call // assigned, in order; [0] is the next to be answered
	proven    bool    // an answer proved HTTP/1.1 keep-alive: may pipeline
	answers   int     // answers read
	closing   bool    // takes no more requests
	dead      bool
	head      *pipeBody // body of the answer being read, if any
	idle      *time.Timer
	hdrTimer  *time.Timer // header timeout of inflight[0]
	hdrWaiter *call       // whom hdrTimer is for
}

// start runs the connection over nc. Called with t.mu held.
func (pc *pconn) start(nc net.Conn) {
	pc.nc = nc
	pc.started = time.Now()
	pc.lr = &limitReader{r: nc, left: math.MaxInt64}
	pc.br = bufio.NewReaderSize(pc.lr, 32<<10)
	pc.bw = bufio.NewWriterSize(nc, 8<<10)
	go pc.writeLoop()
	go pc.readLoop()
}

// assignLocked puts c on this connection.
func (pc *pconn) assignLocked(c *call) {
	c.pc = pc
	c.state = callAssigned
	c.pipelined = len(pc.inflight) > 0
	pc.inflight = append(pc.inflight, c)
	if pc.idle != nil {
		pc.idle.Stop()
		pc.idle = nil
	}
	select {
	case pc.wake <- struct{}{}:
	default:
	}
}

// aheadLocked is the expected bytes still to come on this connection.
func (pc *pconn) aheadLocked() int64 {
	var n int64
	for _, c := range pc.inflight {
		if c.size >= 0 {
			n += c.size
		} else {
			n += unknownSize
		}
	}
	if b := pc.head; b != nil {
		n -= b.n.Load()
	}
	return max(n, 0)
}

// idleCheckLocked arms the idle timeout when nothing is in flight.
func (pc *pconn) idleCheckLocked() {
	if pc.dead || len(pc.inflight) > 0 || pc.idle != nil {
		return
	}
	pc.idle = time.AfterFunc(pc.t.idleTimeout, func() {
		pc.t.mu.Lock()
		defer pc.t.mu.Unlock()
		if len(pc.inflight) == 0 {
			pc.dieLocked(nil)
		}
	})
}

// writeLoop writes the assigned requests in order, several at once when
// several are waiting, and flushes when none is left.
func (pc *pconn) writeLoop() {
	t := pc.t
	for {
		select {
		case <-pc.wake:
		case <-pc.closed:
			return
		}
		t.mu.Lock()
		if pc.dead {
			t.mu.Unlock()
			return
		}
		var batch []*call
		for _, c := range pc.inflight {
			if c.state == callAssigned {
				c.state = callWriting
				batch = append(batch, c)
			}
		}
		t.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		var err error
		for _, c := range batch {
			if err = c.req.Write(pc.bw); err != nil {
				break
			}
		}
		if err == nil {
			err = pc.bw.Flush()
		}
		t.mu.Lock()
		if err != nil {
			pc.dieLocked(fmt.Errorf("writing to %s: %w", pc.h.addr, err))
			t.mu.Unlock()
			return
		}
		for _, c := range batch {
			if c.pc == pc && c.state == callWriting { // not sent elsewhere meanwhile
				c.state = callWritten
			}
		}
		pc.armHeaderTimerLocked()
		t.mu.Unlock()
	}
}

// armHeaderTimerLocked starts the header timeout of the next answer once
// its request is written and the answer before it is read: a request
// queued behind a large file is not timed while that file arrives.
func (pc *pconn) armHeaderTimerLocked() {
	if pc.t.headerTimeout <= 0 || pc.dead || len(pc.inflight) == 0 || pc.head != nil {
		return
	}
	c := pc.inflight[0]
	if c.state != callWritten || pc.hdrWaiter == c {
		return
	}
	if pc.hdrTimer != nil {
		pc.hdrTimer.Stop()
	}
	pc.hdrWaiter = c
	pc.hdrTimer = time.AfterFunc(pc.t.headerTimeout, func() {
		pc.t.mu.Lock()
		defer pc.t.mu.Unlock()
		if pc.hdrWaiter == c && c.state == callWritten {
			pc.failHeadLocked(&timeoutError{fmt.Sprintf("no answer from %s within %v", pc.h.addr, pc.t.headerTimeout)})
		}
	})
}

func (pc *pconn) stopHeaderTimerLocked() {
	if pc.hdrTimer != nil {
		pc.hdrTimer.Stop()
		pc.hdrTimer, pc.hdrWaiter = nil, nil
	}
}

// readLoop reads the answers in order.
func (pc *pconn) readLoop() {
	t := pc.t
	for {
		pc.lr.setLimit(t.maxHeaderBytes)
		_, peekErr := pc.br.Peek(1)
		t.mu.Lock()
		if pc.dead {
			t.mu.Unlock()
			return
		}
		var c *call
		if len(pc.inflight) > 0 && pc.inflight[0].state >= callWriting {
			c = pc.inflight[0]
		}
		if c == nil {
			// Bytes (or the end) on a connection with nothing asked: an
			// idle close, or an answer to a request not sent.
			if peekErr == nil {
				peekErr = fmt.Errorf("%s sent %w", pc.h.addr, errUnsolicited)
				pc.h.noPipeline = time.Now().Add(pipelineBackoff)
			}
			pc.dieLocked(peekErr)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		if peekErr != nil {
			t.mu.Lock()
			pc.endedLocked(peekErr)
			t.mu.Unlock()
			return
		}
		resp, err := pc.readResponse(c.req)
		t.mu.Lock()
		if pc.dead {
			t.mu.Unlock()
			return
		}
		pc.stopHeaderTimerLocked()
		if err != nil {
			if pc.lr.exhausted() {
				err = fmt.Errorf("%s: answer headers larger than %d bytes: %w", pc.h.addr, t.maxHeaderBytes, errBadAnswer)
			} else if !errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%s: malformed answer: %w (%w)", pc.h.addr, errBadAnswer, err)
			}
			if c.pipelined {
				pc.h.noPipeline = time.Now().Add(pipelineBackoff)
			}
			switch {
			case errors.Is(err, io.ErrUnexpectedEOF):
				pc.endedLocked(err)
			case c.pipelined:
				// Out of spec behind another answer: perhaps that answer's
				// framing, not this one. Asked again, unpipelined.
				pc.dieLocked(err)
			default:
				pc.failHeadLocked(err)
			}
			t.mu.Unlock()
			return
		}
		pc.lr.setLimit(math.MaxInt64)
		if c.pipelined && !c.gone {
			if why := mismatch(c, resp); why != "" {
				// apt: "Automatically disabled Acquire::http::Pipeline-Depth
				// due to incorrect response from server/proxy".
				pc.h.noPipeline = time.Now().Add(pipelineBackoff)
				pc.dieLocked(fmt.Errorf("%s answered %s with %s: %w", pc.h.addr, c.req.URL, why, errPipelineBroken))
				t.mu.Unlock()
				return
			}
		}
		if pc.answers == 0 {
			pc.h.noteFirstAnswer(time.Since(pc.started))
		}
		pc.answers++
		keepAlive := resp.ProtoAtLeast(1, 1) && !resp.Close
		if !keepAlive {
			// The server answers no more on this connection (RFC 9112
			// 9.6): what is queued behind goes elsewhere now.
			if !resp.ProtoAtLeast(1, 1) || resp.StatusCode/100 == 2 && pc.answers <= minAnswers {
				pc.h.noPipeline = time.Now().Add(pipelineBackoff)
			}
			pc.closing = true
			pc.logResend("closes after this answer", pc.inflight[1:], nil)
			pc.requeueLocked(pc.inflight[1:], nil)
			pc.inflight = pc.inflight[:1]
		} else if !pc.proven {
			pc.proven = true
		}
		c.state = callAnswered
		b := &pipeBody{pc: pc, c: c, rc: resp.Body, cl: resp.ContentLength, ended: make(chan struct{}), released: make(chan struct{})}
		pc.head = b
		if resp.Body == http.NoBody {
			b.end(endEOF, nil)
		} else {
			resp.Body = b
		}
		if c.gone {
			b.end(endEarly, nil) // nobody reads it: drain it
		} else {
			if resp.Body == b {
				b.watch()
			}
			c.send(callResult{resp: resp})
		}
		t.dispatchLocked(pc.h)
		t.mu.Unlock()

		<-b.ended
		kind, endErr := b.kind, b.err
		if kind == endEarly {
			if err := pc.drain(b); err != nil {
				kind, endErr = endBroken, err
			}
		}
		if !pc.release(c, kind, endErr, keepAlive) {
			close(b.released)
			return
		}
		close(b.released)
	}
}

// release takes c's finished answer off the connection; it reports whether
// the connection goes on.
func (pc *pconn) release(c *call, kind endKind, endErr error, keepAlive bool) bool {
	t := pc.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if pc.dead {
		return false
	}
	pc.head = nil
	pc.inflight = slices.DeleteFunc(pc.inflight, func(x *call) bool { return x == c })
	if kind == endBroken || !keepAlive {
		pc.dieLocked(endErr)
		return false
	}
	if len(pc.inflight) == 0 && pc.br.Buffered() > 0 {
		// Bytes after the last answer asked for, already here: caught
		// before another request is given the connection and takes them
		// for its answer.
		pc.h.noPipeline = time.Now().Add(pipelineBackoff)
		pc.dieLocked(fmt.Errorf("%s sent %w", pc.h.addr, errUnsolicited))
		return false
	}
	pc.armHeaderTimerLocked()
	pc.idleCheckLocked()
	t.dispatchLocked(pc.h)
	return true
}

// readResponse reads the next final answer, skipping interim (1xx) ones
// within the same header bound, as net/http does.
func (pc *pconn) readResponse(req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, fmt.Errorf("101 Switching Protocols to a GET that asked for no upgrade: %w", errBadAnswer)
		case resp.StatusCode >= 100 && resp.StatusCode <= 199:
			continue
		}
		return resp, nil
	}
}

// mismatch says why resp cannot be the answer to c (pipelined), or "".
func mismatch(c *call, resp *http.Response) string {
	switch resp.StatusCode {
	case http.StatusOK:
		if c.size >= 0 && resp.ContentLength >= 0 && resp.ContentLength != c.size {
			return fmt.Sprintf("%d bytes where %d are expected", resp.ContentLength, c.size)
		}
	case http.StatusPartialContent:
		if c.req.Header.Get("Range") == "" {
			return "206 Partial Content to a request without Range"
		}
		if vs := resp.Header.Values("Content-Range"); len(vs) == 1 && c.size >= 0 {
			if cr, err := fetch.ParseContentRange(vs[0]); err == nil && cr.Total >= 0 && cr.Total != c.size {
				return fmt.Sprintf("a range of a %d-byte file where %d bytes are expected", cr.Total, c.size)
			}
		}
	case http.StatusNotModified:
		if c.req.Header.Get("If-None-Match") == "" && c.req.Header.Get("If-Modified-Since") == "" {
			return "304 Not Modified to an unconditional request"
		}
	}
	return ""
}

// drain reads the rest of an answer nobody reads, within maxDrain bytes and
// drainTimeout, so that the answers behind it can be read.
func (pc *pconn) drain(b *pipeBody) error {
	if cl := b.cl; cl >= 0 && cl-b.n.Load() > maxDrain {
		return fmt.Errorf("%s: %d bytes left of an answer not read to its end: %w", pc.h.addr, cl-b.n.Load(), errDropped)
	}
	pc.nc.SetReadDeadline(time.Now().Add(drainTimeout))
	n, err := io.Copy(io.Discard, io.LimitReader(b.rc, maxDrain+1))
	pc.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("%s: draining an answer not read to its end: %w", pc.h.addr, err)
	}
	if n > maxDrain {
		return fmt.Errorf("%s: more than %d bytes left of an answer not read to its end: %w", pc.h.addr, maxDrain, errDropped)
	}
	return nil
}

// failHeadLocked gives err to the request whose answer is next and drops
// the connection; the requests behind it are sent again elsewhere.
func (pc *pconn) failHeadLocked(err error) {
	if len(pc.inflight) > 0 {
		c := pc.inflight[0]
		pc.inflight = pc.inflight[1:]
		if c.state < callAnswered {
			if !c.gone {
				c.send(callResult{err: err})
			}
			c.state = callDone
		}
	}
	pc.dieLocked(err)
}

// endedLocked handles a connection the server closed (or broke) before
// answering all it was asked. Its requests are sent again elsewhere, unless
// the connection never answered anything: then the first gets the error, as
// with net/http (a server that closes on this very request is not asked
// again and again).
func (pc *pconn) endedLocked(err error) {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	err = fmt.Errorf("%s closed the connection: %w", pc.h.addr, err)
	if pc.answers < minAnswers && slices.ContainsFunc(pc.inflight, func(c *call) bool { return c.pipelined && c.state < callAnswered }) {
		// apt: a pipeline broken by the server early on turns pipelining off.
		pc.h.noPipeline = time.Now().Add(pipelineBackoff)
	}
	if pc.answers == 0 {
		pc.failHeadLocked(err)
		return
	}
	pc.dieLocked(err)
}

// dieLocked closes the connection and sends the requests it did not answer
// again on others (or fails them, past maxResends). err (nil for an idle
// close) is what those get.
func (pc *pconn) dieLocked(err error) {
	if pc.dead {
		return
	}
	pc.dead = true
	close(pc.closed)
	if pc.nc != nil {
		pc.nc.Close()
	}
	pc.stopHeaderTimerLocked()
	if pc.idle != nil {
		pc.idle.Stop()
		pc.idle = nil
	}
	h := pc.h
	h.conns = slices.DeleteFunc(h.conns, func(p *pconn) bool { return p == pc })
	var unanswered []*call
	for _, c := range pc.inflight {
		if c.state < callAnswered {
			unanswered = append(unanswered, c)
		}
	}
	pc.inflight = nil
	if b := pc.head; b != nil {
		b.end(endBroken, err)
	}
	pc.logResend("ended", unanswered, err)
	pc.requeueLocked(unanswered, err)
	pc.t.dispatchLocked(h)
}

// logResend writes one debug line when requests already sent on this
// connection go to another: the origin may have answered them, so it may
// serve those files twice.
func (pc *pconn) logResend(why string, calls []*call, err error) {
	sent := 0
	for _, c := range calls {
		if c.state >= callWriting && !c.gone {
			sent++
		}
	}
	if sent > 0 {
		slog.Debug("origin connection "+why+" with requests sent and not answered; sending them again", "origin", pc.h.addr,
			"sent", sent, "answers", pc.answers, "err", err)
	}
}

// requeueLocked puts calls this connection will not answer back at the head
// of the host's queue, in order (or fails them past maxResends). Calls
// whose callers left are forgotten.
func (pc *pconn) requeueLocked(calls []*call, err error) {
	if err == nil {
		err = fmt.Errorf("%s closed the connection: %w", pc.h.addr, io.ErrUnexpectedEOF)
	}
	var back []*call
	for _, c := range calls {
		switch {
		case c.gone:
			c.state = callDone
		case c.resends >= maxResends:
			c.send(callResult{err: fmt.Errorf("sent %d times without an answer: %w", c.resends+1, err)})
		default:
			if c.state >= callWriting {
				c.resends++
			}
			c.pc, c.state, c.pipelined = nil, callQueued, false
			back = append(back, c)
		}
	}
	pc.h.queue = append(back, pc.h.queue...)
}

// Errors of the pool; each is wrapped with the origin's address.
var (
	errUnsolicited = errors.New("an answer to no request (more answers than requests)")
	errBadAnswer   = errors.New("bad answer")
	errDropped     = errors.New("connection dropped")
)

// timeoutError is a header timeout: a net.Error, so that
// fetch.IsUnavailable holds, as for net/http's.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

var _ net.Error = (*timeoutError)(nil)

// limitReader bounds what is read below the bufio.Reader while a header is
// read (net/http's persistConn.readLimit): a server cannot make the reader
// hold an endless status line or header.
type limitReader struct {
	r    io.Reader
	left int64 // owned by whoever reads: the read loop, or the body's reader
}

func (l *limitReader) setLimit(n int64) { l.left = n }
func (l *limitReader) exhausted() bool  { return l.left <= 0 }

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeaderLimit
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

var errHeaderLimit = errors.New("header size limit reached")

// How an answer's body ended.
type endKind int

const (
	endEOF    endKind = iota + 1 // read to its end: the connection goes on
	endEarly                     // closed before its end: drain, or drop the connection
	endBroken                    // a read failed or the connection died: drop it
)

// pipeBody is the body of a pipelined answer. Its end (EOF, Close, an error,
// the caller's context ending) hands the connection back to the read loop.
type pipeBody struct {
	pc *pconn
	c  *call
	rc io.Reader    // the body as http.ReadResponse reads it off the connection
	cl int64        // its Content-Length; -1 unknown
	n  atomic.Int64 // bytes read

	stop  func() bool   // stops the context watch; set before the caller gets the body
	once  sync.Once     // ends it once
	kind  endKind       // set before ended is closed
	err   error         // set before ended is closed
	ended chan struct{} // closed at the end
	// released is closed once the read loop took the ended answer off its
	// connection: a Read returns io.EOF only after it, so that the
	// connection is idle (reusable, or closed by CloseIdleConnections) by
	// the time the caller sees the end, as with net/http.
	released chan struct{}

	mu      sync.Mutex // held by Read; Close uses TryLock to see a Read blocked
	readErr error      // what Read returns after the end; protected by mu
}

// watch drops the connection when the caller's context ends while the body
// is being read (net/http does the same): the bytes still due cannot be
// skipped on the wire.
func (b *pipeBody) watch() {
	ctx := b.c.ctx
	b.stop = context.AfterFunc(ctx, func() {
		b.abort(fmt.Errorf("reading %s: %w", b.c.req.URL, context.Cause(ctx)))
	})
}

// end ends the body once; it reports whether this call did.
func (b *pipeBody) end(kind endKind, err error) bool {
	ended := false
	b.once.Do(func() {
		b.kind, b.err = kind, err
		if b.stop != nil {
			b.stop()
		}
		close(b.ended)
		ended = true
	})
	return ended
}

func (b *pipeBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readErr != nil {
		return 0, b.readErr
	}
	select {
	case <-b.ended:
		// ended from outside (the context, the connection died)
		b.readErr = b.err
		if b.readErr == nil {
			b.readErr = errBodyClosed
		}
		return 0, b.readErr
	default:
	}
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	b.pc.h.read.Add(int64(n))
	switch {
	case err == io.EOF:
		b.readErr = io.EOF
		b.end(endEOF, nil)
		<-b.released
	case err != nil:
		select {
		case <-b.ended: // aborted: say why
			if b.err != nil {
				err = b.err
			}
		default:
		}
		b.readErr = err
		b.end(endBroken, err)
	}
	return n, err
}

// Close ends the body. Before its end, the read loop drains the rest or
// drops the connection; a Read blocked meanwhile (a stalled origin, the
// fetch guard closing it) is unblocked by dropping the connection.
func (b *pipeBody) Close() error {
	if !b.mu.TryLock() {
		b.abort(errBodyClosed)
		return nil
	}
	defer b.mu.Unlock()
	if b.readErr == nil {
		b.readErr = errBodyClosed
	}
	b.end(endEarly, nil)
	return nil
}

// abort drops the connection under the body, unless the body already
// ended.
func (b *pipeBody) abort(err error) {
	if !b.end(endBroken, err) {
		return
	}
	b.pc.t.mu.Lock()
	b.pc.dieLocked(err)
	b.pc.t.mu.Unlock()
}

var errBodyClosed = errors.New("read on a closed body")
