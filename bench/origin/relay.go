package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Link is the network path a Relay emulates between its clients and the
// address behind it. The zero Link is plain loopback.
type Link struct {
	// Delay is the one-way delay in each direction: a request and its
	// answer cost 2×Delay more than on loopback, and so does setting up a
	// connection (see Relay).
	Delay time.Duration
	// Rate is the capacity of each direction in bytes per second, shared
	// by every connection through the relay, as one uplink is; 0 means
	// unlimited (the loopback's own speed).
	Rate int64
}

// RTT is the round-trip time the link adds.
func (l Link) RTT() time.Duration { return 2 * l.Delay }

// RelayStats is what crossed a relay since it started or ResetStats.
type RelayStats struct {
	Conns int   // connections accepted
	Up    int64 // bytes passed on towards the address behind the relay
	Down  int64 // bytes passed on back to the clients
}

// Relay is a TCP relay on a loopback port below 32768 in front of an
// address, that makes every connection through it cross a Link: the
// tc netem of a machine without netem. Each direction of each connection
// is read as it arrives and written in the same order Delay after it left
// (after waiting for its turn on the shared Rate, if any), so the delay
// adds latency without lowering throughput: up to 64 MiB per direction and
// connection can be in flight (3.2 GB/s at 20 ms).
//
// A connection's set-up costs one round trip, as TCP's handshake does:
// the relay accepts at once (it is on loopback), but holds the client's
// first bytes until 2×Delay after the accept, as if the client had sent
// them when the SYN-ACK came back. What it does not emulate: TCP's slow
// start and congestion control over the longer path (loopback's windows
// are large from the start), loss, jitter, and the MTU.
//
// A half-close is passed on (EOF from one side becomes CloseWrite on the
// other, once the queued bytes are written); an error on either side ends
// both. Close stops it and ends every connection.
type Relay struct {
	// URL is "http://127.0.0.1:PORT" without a trailing slash.
	URL  string
	Addr string
	Port int

	link     Link
	target   string
	ln       net.Listener
	up, down *shaper
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	mu       sync.Mutex // protects conns, accepted, closed
	conns    map[net.Conn]struct{}
	accepted int
	closed   bool

	upBytes, downBytes atomic.Int64
}

// StartRelay relays a free loopback port (between 20000 and 32767, see
// ListenLow) to target ("127.0.0.1:PORT") across link.
func StartRelay(target string, link Link) (*Relay, error) {
	if link.Delay < 0 || link.Rate < 0 {
		return nil, fmt.Errorf("start relay to %s: negative delay or rate", target)
	}
	ln, err := ListenLow()
	if err != nil {
		return nil, fmt.Errorf("start relay to %s: %w", target, err)
	}
	r := &Relay{Addr: ln.Addr().String(), link: link, target: target, ln: ln,
		up: newShaper(link.Rate), down: newShaper(link.Rate), done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	r.Port = ln.Addr().(*net.TCPAddr).Port
	r.URL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Link is the path the relay emulates.
func (r *Relay) Link() Link { return r.link }

// Stats returns what crossed the relay since StartRelay or ResetStats.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RelayStats{Conns: r.accepted, Up: r.upBytes.Load(), Down: r.downBytes.Load()}
}

// ResetStats starts the counts of Stats again from zero.
func (r *Relay) ResetStats() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted = 0
	r.upBytes.Store(0)
	r.downBytes.Store(0)
}

// Close stops accepting, ends every relayed connection and waits for the
// relay's goroutines. Closing twice does nothing.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		at := time.Now()
		if !r.track(c) {
			c.Close()
			return
		}
		r.mu.Lock()
		r.accepted++
		r.mu.Unlock()
		r.wg.Add(1)
		go r.relay(c, at)
	}
}

// track registers c for Close; false once the relay is closed.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
		c.Close()
	}
}

// relay passes client's bytes to a new connection to the target and back,
// across the link, until both directions end.
func (r *Relay) relay(client net.Conn, accepted time.Time) {
	defer r.wg.Done()
	server, err := net.DialTimeout("tcp", r.target, 10*time.Second)
	if err != nil || !r.track(server) {
		if server != nil {
			server.Close()
		}
		r.untrack(client)
		return
	}
	defer r.untrack(client, server)
	var both sync.WaitGroup
	both.Add(2)
	go func() {
		defer both.Done()
		// The handshake's round trip: the client's first bytes leave when
		// its SYN-ACK would have come back.
		r.pipe(server, client, r.up, accepted.Add(r.link.RTT()), &r.upBytes)
	}()
	go func() {
		defer both.Done()
		r.pipe(client, server, r.down, time.Time{}, &r.downBytes)
	}()
	both.Wait()
}

// chunk is bytes read from one side and the time to write them to the
// other.
type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// pipe copies src to dst across the link: each chunk read waits for its
// turn on sh (if it has a rate) but never leaves before notBefore, and is
// written Delay after it left. At src's EOF it half-closes dst once every
// queued chunk is written; on an error of either side it closes both.
func (r *Relay) pipe(dst, src net.Conn, sh *shaper, notBefore time.Time, count *atomic.Int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	q := make(chan chunk, 1024)
	readErr := make(chan error, 1)
	go func() {
		defer close(q)
		for {
			buf := chunkPool.Get().(*[]byte)
			n, err := src.Read(*buf)
			if n > 0 {
				now := time.Now()
				if now.Before(notBefore) {
					now = notBefore
				}
				left := sh.book(now, n)
				if sleepUntil(ctx, left) != nil {
					readErr <- ctx.Err()
					return
				}
				select {
				case q <- chunk{buf: buf, n: n, due: left.Add(r.link.Delay)}:
				case <-ctx.Done():
					readErr <- ctx.Err()
					return
				}
			} else {
				chunkPool.Put(buf)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var writeErr error
	for c := range q {
		if writeErr == nil {
			if writeErr = sleepUntil(ctx, c.due); writeErr == nil {
				// Counted before the write, so that a client that has
				// read the bytes sees them counted.
				count.Add(int64(c.n))
				_, writeErr = dst.Write((*c.buf)[:c.n])
			}
			if writeErr != nil {
				// Stop the reader: nothing more can be delivered.
				src.Close()
				dst.Close()
				cancel()
			}
		}
		chunkPool.Put(c.buf)
	}
	if err := <-readErr; writeErr == nil && errors.Is(err, io.EOF) {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
			return
		}
	}
	src.Close()
	dst.Close()
}

// shaper is one direction's shared rate: a pacer behind a mutex. A nil
// shaper is unlimited.
type shaper struct {
	mu sync.Mutex // protects p
	p  pacer
}

func newShaper(rate int64) *shaper {
	if rate <= 0 {
		return nil
	}
	return &shaper{p: pacer{rate: rate}}
}

// book returns when n bytes ready at now may start across the link.
func (s *shaper) book(now time.Time, n int) time.Time {
	if s == nil {
		return now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return book(now, n, &s.p)
}
