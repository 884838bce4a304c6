package origin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// rawOrigin is an origin on 127.0.0.1 written at the TCP level, so that a
// test sees exactly what arrives on each connection and when answers go
// out: net/http's server reads one request at a time and would hide a
// pipeline. serve runs once per accepted connection (n counts them from 1).
type rawOrigin struct {
	t     testing.TB
	ln    net.Listener
	port  int
	files map[string][]byte
	serve func(n int, rc *rawConn)

	mu       sync.Mutex // protects conns, rcs, maxAhead
	conns    int
	rcs      []*rawConn // by connection number - 1
	maxAhead int        // most requests read and unanswered on a connection when an answer was written
}

func (o *rawOrigin) worstAhead() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.maxAhead
}

// rawConn is one connection to a rawOrigin. Requests are read ahead by a
// goroutine as they arrive.
type rawConn struct {
	nc net.Conn
	o  *rawOrigin

	mu       sync.Mutex // protects got, answered, maxAhead; cond waits on it
	cond     *sync.Cond
	got      []*http.Request // requests read so far, in order
	at       []time.Time     // when each arrived
	readErr  error
	answered int
	maxAhead int // most requests read and unanswered when an answer was written
}

func newRawOrigin(t *testing.T, files map[string][]byte, serve func(n int, rc *rawConn)) *rawOrigin {
	return newRawOriginB(t, files, serve)
}

func newRawOriginB(t testing.TB, files map[string][]byte, serve func(n int, rc *rawConn)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{t: t, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, files: files, serve: serve}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns++
			n := o.conns
			o.mu.Unlock()
			rc := &rawConn{nc: nc, o: o}
			rc.cond = sync.NewCond(&rc.mu)
			o.mu.Lock()
			o.rcs = append(o.rcs, rc)
			o.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); rc.readAll() }()
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(n, rc)
			}()
			t.Cleanup(func() { nc.Close() })
		}
	}()
	return o
}

func (o *rawOrigin) connections() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conns
}

// requests returns how many requests connection n (from 1) has received.
func (o *rawOrigin) requests(n int) int {
	o.mu.Lock()
	if n > len(o.rcs) {
		o.mu.Unlock()
		return 0
	}
	rc := o.rcs[n-1]
	o.mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func (rc *rawConn) readAll() {
	br := bufio.NewReader(rc.nc)
	for {
		req, err := http.ReadRequest(br)
		rc.mu.Lock()
		if err != nil {
			rc.readErr = err
			rc.cond.Broadcast()
			rc.mu.Unlock()
			return
		}
		rc.got = append(rc.got, req)
		rc.at = append(rc.at, time.Now())
		rc.cond.Broadcast()
		rc.mu.Unlock()
	}
}

// wait returns the i-th request (from 0) once it arrived, or nil when the
// connection ended before it did.
func (rc *rawConn) wait(i int) *http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for len(rc.got) <= i && rc.readErr == nil {
		rc.cond.Wait()
	}
	if len(rc.got) <= i {
		return nil
	}
	return rc.got[i]
}

// write writes s raw and counts it as the answer to one request.
func (rc *rawConn) write(s string) {
	rc.mu.Lock()
	rc.maxAhead = max(rc.maxAhead, len(rc.got)-rc.answered)
	rc.answered++
	ahead := rc.maxAhead
	rc.mu.Unlock()
	rc.o.mu.Lock()
	rc.o.maxAhead = max(rc.o.maxAhead, ahead)
	rc.o.mu.Unlock()
	io.WriteString(rc.nc, s)
}

// answer is the origin's answer to req with extra header lines.
// A nil req (the connection ended before it came) has no answer.
func (o *rawOrigin) answer(req *http.Request, proto string, extra ...string) string {
	if req == nil {
		return ""
	}
	data, ok := o.files[req.URL.Path]
	if !ok {
		return proto + " 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s 200 OK\r\nContent-Length: %d\r\n", proto, len(data))
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(data)
	return b.String()
}

// serveInOrder answers requests from the i-th on, one by one, as HTTP/1.1
// with keep-alive, until the connection ends.
func (rc *rawConn) serveInOrder(i int) {
	for ; ; i++ {
		req := rc.wait(i)
		if req == nil {
			return
		}
		rc.write(rc.o.answer(req, "HTTP/1.1"))
	}
}

func (o *rawOrigin) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(o.port) + path
}

// rawFiles makes n files /f0 … with distinct sizes (so that an answer
// taken for another's is seen) and contents.
func rawFiles(n, base int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		data := make([]byte, base+i*7)
		for j := range data {
			data[j] = byte(i*31 + j)
		}
		m["/f"+strconv.Itoa(i)] = data
	}
	return m
}

// checked is an attempt for a file of known digest and size, as the fetch
// pipeline makes for indexed content: the kind that may be pipelined.
func checked(u string, data []byte) *fetch.Attempt {
	sum := sha256.Sum256(data)
	return &fetch.Attempt{URL: u, Request: &fetch.Request{URL: u, Expect: &repoindex.Expectation{SHA256: sum[:], Size: int64(len(data))}}}
}

// pipeClient is a client of one connection per host to o.
func pipeClient(t *testing.T, o *rawOrigin, tr *http.Transport) *Client {
	cfg := loopback(o.port)
	cfg.MaxConnsPerHost = 1
	cfg.Transport = tr
	return newClient(t, cfg)
}

// fetchAll fetches paths at once and checks every body.
func fetchAll(t *testing.T, c *Client, o *rawOrigin, paths []string) {
	t.Helper()
	errs := make(chan error, len(paths))
	for _, p := range paths {
		go func() {
			_, data, err := get(t, c, checked(o.url(p), o.files[p]))
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: %w", p, err)
			case string(data) != string(o.files[p]):
				errs <- fmt.Errorf("%s: got %d bytes, not the file's %d", p, len(data), len(o.files[p]))
			default:
				errs <- nil
			}
		}()
	}
	for range paths {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// offPipelining reports whether the client put o's host off pipelining.
func offPipelining(c *Client, o *rawOrigin) bool {
	c.pipe.mu.Lock()
	defer c.pipe.mu.Unlock()
	h := c.pipe.hosts["127.0.0.1:"+strconv.Itoa(o.port)]
	return h != nil && time.Now().Before(h.noPipeline)
}

// proven fetches /f0 alone: the connection's first answer proves it speaks
// HTTP/1.1 with keep-alive, so that what follows may be pipelined.
func proven(t *testing.T, c *Client, o *rawOrigin) {
	t.Helper()
	if _, data, err := get(t, c, checked(o.url("/f0"), o.files["/f0"])); err != nil || string(data) != string(o.files["/f0"]) {
		t.Fatalf("first request: %d bytes, %v", len(data), err)
	}
}

func paths(from, to int) []string {
	var ps []string
	for i := from; i < to; i++ {
		ps = append(ps, "/f"+strconv.Itoa(i))
	}
	return ps
}

// The origin receives DefaultPipelineDepth requests on one connection before
// it writes the first answer: they were sent without waiting for answers.
func TestPipeliningSendsAhead(t *testing.T) {
	t.Parallel()
	const n = DefaultPipelineDepth
	before := make(chan int, 1)
	o := newRawOrigin(t, rawFiles(n+1, 1000), func(_ int, rc *rawConn) {
		rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
		// Wait for the whole pipeline (or the connection's end, when
		// requests come one at a time and the test fails).
		rc.wait(n)
		rc.mu.Lock()
		before <- len(rc.got) - 1
		rc.mu.Unlock()
		rc.serveInOrder(1)
	})
	c := pipeClient(t, o, nil)
	proven(t, c, o)
	done := make(chan struct{})
	go func() { defer close(done); fetchAll(t, c, o, paths(1, n+1)) }()
	if got := <-before; got != n {
		t.Errorf("the origin had %d requests before its first answer on the connection, want %d", got, n)
	}
	<-done
	if k := o.connections(); k != 1 {
		t.Errorf("%d connections, want 1", k)
	}
	if offPipelining(c, o) {
		t.Error("a well-behaved origin was put off pipelining")
	}
}

// No more than the depth is in flight on one connection: the rest waits.
func TestPipeliningDepthBound(t *testing.T) {
	t.Parallel()
	const depth = 3
	o := newRawOrigin(t, rawFiles(12, 500), func(_ int, rc *rawConn) {
		rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
		rc.wait(depth) // the pipeline's depth, then answer one at a time
		rc.serveInOrder(1)
	})
	cfg := loopback(o.port)
	cfg.MaxConnsPerHost = 1
	cfg.PipelineDepth = depth
	c := newClient(t, cfg)
	proven(t, c, o)
	fetchAll(t, c, o, paths(1, 12))
	if worst := o.worstAhead(); worst > depth || worst < 2 {
		t.Errorf("at most %d requests in flight on one connection, want 2 to %d", worst, depth)
	}
}

// An origin that stops pipelining in any of the ways apt has met: every
// request is still answered (the unanswered ones sent again on a fresh
// connection), and the host is put off pipelining.
func TestPipelineBrokenByOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		first func(rc *rawConn) // the first connection; later ones answer in order
	}{
		{"closes mid-pipeline", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
			rc.wait(3)
			rc.write(rc.o.answer(rc.wait(1), "HTTP/1.1"))
		}},
		{"HTTP/1.0", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.0"))
		}},
		{"Connection: close", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1", "Connection: close"))
		}},
		{"an extra answer", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
			rc.wait(3)
			rc.write(rc.o.answer(rc.wait(1), "HTTP/1.1") + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz")
			rc.serveInOrder(2)
		}},
		{"garbage in the pipeline", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
			rc.wait(3)
			rc.write(rc.o.answer(rc.wait(1), "HTTP/1.1") + "\x00\x01 not HTTP at all\r\n\r\n")
			rc.serveInOrder(2)
		}},
		{"garbage after the last answer", func(rc *rawConn) {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1") + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz")
			rc.serveInOrder(1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newRawOrigin(t, rawFiles(8, 2000), func(n int, rc *rawConn) {
				if n == 1 {
					tc.first(rc)
					return
				}
				rc.serveInOrder(0)
			})
			c := pipeClient(t, o, nil)
			proven(t, c, o)
			fetchAll(t, c, o, paths(1, 8))
			if k := o.connections(); k < 2 {
				t.Errorf("%d connection: the first was not given up", k)
			}
			if !offPipelining(c, o) {
				t.Error("the host was not put off pipelining")
			}
			// Off pipelining, requests go one at a time per connection.
			fetchAll(t, c, o, paths(1, 8))
		})
	}
}

// A stalled answer times out (a net.Error, so the pipeline tries the next
// source) and the requests queued behind it are answered on another
// connection.
func TestPipelineStall(t *testing.T) {
	t.Parallel()
	o := newRawOrigin(t, rawFiles(5, 3000), func(n int, rc *rawConn) {
		if n == 1 {
			rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
			rc.wait(1000) // until the client drops the connection
			return
		}
		rc.serveInOrder(0)
	})
	c := pipeClient(t, o, &http.Transport{ResponseHeaderTimeout: 300 * time.Millisecond})
	proven(t, c, o)
	type res struct {
		p   string
		err error
	}
	ps := paths(1, 5)
	out := make(chan res, len(ps))
	for _, p := range ps {
		go func() {
			_, data, err := get(t, c, checked(o.url(p), o.files[p]))
			if err == nil && string(data) != string(o.files[p]) {
				err = fmt.Errorf("wrong bytes (%d)", len(data))
			}
			out <- res{p, err}
		}()
	}
	failed := 0
	for range ps {
		r := <-out
		if r.err == nil {
			continue
		}
		failed++
		var ne net.Error
		if !errors.As(r.err, &ne) || !ne.Timeout() || !fetch.IsUnavailable(r.err) {
			t.Errorf("%s: %v; want a timeout", r.p, r.err)
		}
	}
	if failed > 1 {
		t.Errorf("%d requests failed; only the stalled answer's should", failed)
	}
	if k := o.connections(); k < 2 {
		t.Errorf("%d connection; the stalled one was kept", k)
	}
}

// A request whose caller goes away is forgotten; the others on its
// connection are answered on it.
func TestPipelineCancelOne(t *testing.T) {
	t.Parallel()
	arrived, proceed := make(chan struct{}), make(chan struct{})
	o := newRawOrigin(t, rawFiles(4, 5000), func(n int, rc *rawConn) {
		rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
		if n == 1 {
			rc.wait(3)
			close(arrived)
			<-proceed
		}
		rc.serveInOrder(1)
	})
	c := pipeClient(t, o, nil)
	proven(t, c, o)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		b, err := c.Fetch(ctx, checked(o.url("/f2"), o.files["/f2"]))
		if err == nil {
			b.Close()
		}
		gone <- err
	}()
	done := make(chan struct{})
	go func() { defer close(done); fetchAll(t, c, o, []string{"/f1", "/f3"}) }()
	<-arrived
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled request: %v, want context.Canceled", err)
	}
	close(proceed)
	<-done
	if k := o.connections(); k != 1 {
		t.Errorf("%d connections: the canceled request broke its connection", k)
	}
}

// A body closed before its end does not wedge the answer behind it: a short
// rest is drained (the connection stays), a long one drops the connection
// and the answers behind it are asked again on another.
func TestPipelineUnreadBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		size  int
		conns int
	}{
		{"drained", 20 << 10, 1},
		{"dropped", 4 * maxDrain, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := rawFiles(2, 100)
			files["/big"] = make([]byte, tc.size)
			first := make(chan *rawConn, 1)
			o := newRawOrigin(t, files, func(n int, rc *rawConn) {
				if n == 1 {
					first <- rc
					rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
					rc.wait(2)
					rc.serveInOrder(1)
					return
				}
				rc.serveInOrder(0)
			})
			c := pipeClient(t, o, nil)
			proven(t, c, o)
			rc := <-first
			bigErr := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				b, err := c.Fetch(ctx, checked(o.url("/big"), files["/big"]))
				if err == nil {
					_, err = io.ReadFull(b, make([]byte, 10))
					b.Close()
				}
				bigErr <- err
			}()
			rc.wait(1) // /big is asked first
			fetchAll(t, c, o, []string{"/f1"})
			if err := <-bigErr; err != nil {
				t.Fatal(err)
			}
			if k := o.connections(); k != tc.conns {
				t.Errorf("%d connections, want %d", k, tc.conns)
			}
		})
	}
}

// An https origin is not pipelined: it goes through net/http's transport.
func TestPipelineNotForHTTPS(t *testing.T) {
	t.Parallel()
	c := newClient(t, loopback(443))
	if c.pipe == nil {
		t.Fatal("pipelining is off by default")
	}
	req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:1/x", nil)
	if _, err := c.pipe.RoundTrip(req); err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	c.pipe.mu.Lock()
	n := len(c.pipe.hosts)
	c.pipe.mu.Unlock()
	if n != 0 {
		t.Errorf("the pool took an https request (%d hosts)", n)
	}
}

// PipelineDepth 1 leaves net/http's transport alone.
func TestPipelineDepthOne(t *testing.T) {
	t.Parallel()
	cfg := loopback(80)
	cfg.PipelineDepth = 1
	if c := newClient(t, cfg); c.pipe != nil {
		t.Error("PipelineDepth 1 still pipelines")
	}
	cfg.PipelineDepth = -1
	if _, err := New(cfg); err == nil {
		t.Error("a negative depth was accepted")
	}
}

// BenchmarkPipeliningFarOrigin fetches 40 small files from an origin that
// answers each request rtt after it arrived (a far origin, emulated at the
// server), over 4 connections, without and with pipelining.
func BenchmarkPipeliningFarOrigin(b *testing.B) {
	const rtt = 5 * time.Millisecond
	files := rawFiles(40, 20<<10)
	for _, depth := range []int{1, DefaultPipelineDepth} {
		b.Run("depth="+strconv.Itoa(depth), func(b *testing.B) {
			o := newRawOriginB(b, files, func(_ int, rc *rawConn) {
				for i := 0; ; i++ {
					req := rc.wait(i)
					if req == nil {
						return
					}
					rc.mu.Lock()
					at := rc.at[i]
					rc.mu.Unlock()
					time.Sleep(time.Until(at.Add(rtt)))
					rc.write(rc.o.answer(req, "HTTP/1.1"))
				}
			})
			cfg := loopback(o.port)
			cfg.PipelineDepth = depth
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseIdleConnections()
			ps := paths(0, 40)
			b.SetBytes(int64(40 * (20<<10 + 20*7)))
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				for _, p := range ps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						body, err := c.Fetch(context.Background(), checked(o.url(p), files[p]))
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, body)
						body.Close()
					}()
				}
				wg.Wait()
			}
		})
	}
}

// A server's keep-alive limit (Connection: close after several answers, as
// Apache's MaxKeepAliveRequests) ends a connection, not pipelining: the
// requests behind the last answer are sent again on a new connection.
func TestPipelineKeepAliveLimit(t *testing.T) {
	t.Parallel()
	o := newRawOrigin(t, rawFiles(8, 1500), func(n int, rc *rawConn) {
		if n > 1 {
			rc.serveInOrder(0)
			return
		}
		rc.write(rc.o.answer(rc.wait(0), "HTTP/1.1"))
		rc.wait(4)
		for i := 1; i < minAnswers+1; i++ {
			extra := []string{}
			if i == minAnswers {
				extra = append(extra, "Connection: close")
			}
			rc.write(rc.o.answer(rc.wait(i), "HTTP/1.1", extra...))
		}
	})
	c := pipeClient(t, o, nil)
	proven(t, c, o)
	fetchAll(t, c, o, paths(1, 8))
	if k := o.connections(); k < 2 {
		t.Errorf("%d connection: the closed one was reused", k)
	}
	if offPipelining(c, o) {
		t.Error("a keep-alive limit put the host off pipelining")
	}
}
