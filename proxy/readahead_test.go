package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseHead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		head        string
		method, uri string
		body        bool
	}{
		{"GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\n", "GET", "http://h/x.deb", false},
		{"GET /h/x.deb HTTP/1.0\r\n\r\n", "GET", "/h/x.deb", false},
		{"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n", "POST", "/x", true},
		{"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "POST", "/x", true},
		{"HEAD /h/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HEAD", "/h/x", false},
		{"garbage\r\n\r\n", "", "", false},
		{"GET /x HTTP/2.0\r\n\r\n", "", "", false},
	} {
		mb, ub, b := parseHead([]byte(tc.head))
		m, u := string(mb), string(ub)
		if m != tc.method || u != tc.uri || b != tc.body {
			t.Errorf("parseHead(%q) = %q %q %v, want %q %q %v", tc.head, m, u, b, tc.method, tc.uri, tc.body)
		}
	}
}

// Only requests queued behind an unanswered one are started ahead: a client
// that waits for each answer (keep-alive, no pipelining) starts nothing.
func TestScanStartsOnlyQueuedRequests(t *testing.T) {
	t.Parallel()
	var started []string
	c := &raConn{sem: make(chan struct{}, maxAhead)}
	c.startFn = func(uri string, seq int) { started = append(started, fmt.Sprintf("%s#%d", uri, seq)) }
	get := func(u string) []byte { return []byte("GET " + u + " HTTP/1.1\r\nHost: h\r\n\r\n") }
	c.scan(get("/h/1.deb")) // served next by the server itself
	c.mu.Lock()
	c.answered++
	c.mu.Unlock()
	c.scan(get("/h/2.deb")) // keep-alive, after the answer: not ahead
	if len(started) != 0 {
		t.Fatalf("started %v for a client that does not pipeline", started)
	}
	c.scan(append(append(get("/h/3.deb"), get("/h/4.deb")...), get("/h/5.deb")[:10]...))
	c.scan(get("/h/5.deb")[10:])
	// /h/2.deb is being answered: the three behind it are queued, the
	// connection's third to fifth requests (their fetch.Line.Seq).
	if strings.Join(started, " ") != "/h/3.deb#3 /h/4.deb#4 /h/5.deb#5" {
		t.Fatalf("started %v, want the three requests queued behind /h/2.deb, numbered 3 to 5", started)
	}
	c.scan([]byte("POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /h/6.deb HTTP/1.1\r\n\r\n"))
	if len(started) != 3 {
		t.Fatalf("started %v after a request with a body", started)
	}
}

// Every request head runs through scan: it allocates nothing of its own
// for a request it does not start ahead (the method and URI strings were two
// allocations a request).
func TestScanAllocatesNothingPerHead(t *testing.T) {
	c := &raConn{sem: make(chan struct{}, maxAhead)}
	c.startFn = func(string, int) {}
	head := []byte("GET http://h/pool/x.deb HTTP/1.1\r\nHost: h\r\n\r\n")
	c.scan(head) // the buffers grow once
	allocs := testing.AllocsPerRun(100, func() {
		c.mu.Lock()
		c.answered = c.seen // answered: nothing queued, nothing started
		c.ends = c.ends[:0]
		c.mu.Unlock()
		c.scan(head)
	})
	if allocs != 0 {
		t.Errorf("scan allocates %.1f times per request head, want 0", allocs)
	}
}

func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET http://h/x.deb HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mb, ub, _ := parseHead(b)
		m, u := string(mb), string(ub)
		if m != "" && (u == "" || strings.ContainsAny(m, " \r\n")) {
			t.Fatalf("parseHead(%q) = %q %q", b, m, u)
		}
		_ = http.MethodGet
	})
}

// A small read (net/http's one-byte background read while a handler runs)
// still takes in, and scans, every request head the client has sent: the
// read-ahead must see a request when it arrives, not when the server's
// buffer has drained down to it. The bytes are then handed out in order,
// none lost or repeated.
func TestSmallReadScansWhatArrived(t *testing.T) {
	t.Parallel()
	c := newPipeConn(t)
	client := c.client
	var sent []byte
	var heads []string
	for i := 1; i <= 3; i++ {
		h := fmt.Sprintf("GET /h/%d.deb HTTP/1.1\r\nHost: h\r\n\r\n", i)
		heads = append(heads, h)
		sent = append(sent, h...)
	}
	go client.Write(sent)
	// net/http's background read, while the handler of an earlier request
	// runs: it gets no byte of a pipelined request, and ends when the
	// server aborts it.
	done := make(chan error, 1)
	go func() {
		n, err := c.Read(make([]byte, 1))
		if n != 0 {
			err = fmt.Errorf("the background read got %d bytes", n)
		}
		done <- err
	}()
	if !eventually(func() bool { return len(c.started()) == 2 }) {
		t.Fatalf("started %q during the background read; want the two requests queued behind the first", c.started())
	}
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the aborted background read returned %v, want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})
	// Then the bytes are handed out in order, none lost or repeated, one
	// head per read at most.
	buf := make([]byte, 4096)
	for i, want := range heads {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %d: %q, %v; want %q", i+1, buf[:n], err, want)
		}
	}
	if s := strings.Join(c.started(), " "); s != "/h/2.deb /h/3.deb" {
		t.Fatalf("started %q, want the two requests queued behind the first", s)
	}
}

// pipeConn is a read-ahead connection over one end of a pipe, recording the
// requests it starts ahead; the test writes to client.
type pipeConn struct {
	*raConn
	client net.Conn
	mu     sync.Mutex
	starts []string
}

func newPipeConn(t *testing.T) *pipeConn {
	client, server := net.Pipe()
	pc := &pipeConn{raConn: newRAConn(server, nil), client: client}
	pc.startFn = func(uri string, _ int) { pc.mu.Lock(); pc.starts = append(pc.starts, uri); pc.mu.Unlock() }
	t.Cleanup(func() { client.Close(); pc.Close() }) // Close ends a background read left waiting
	return pc
}

// started returns the requests started ahead so far.
func (pc *pipeConn) started() []string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return slices.Clone(pc.starts)
}

// eventually polls f for up to ten seconds.
func eventually(f func() bool) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return false
}

// recConn records what reaches its ReadFrom, the path by which net/http
// hands a file to sendfile.
type recConn struct {
	*net.TCPConn
	mu   sync.Mutex
	from []string
}

func (c *recConn) ReadFrom(r io.Reader) (int64, error) {
	inner := r
	if lr, ok := r.(*io.LimitedReader); ok {
		inner = lr.R
	}
	c.mu.Lock()
	c.from = append(c.from, fmt.Sprintf("%T", inner))
	c.mu.Unlock()
	return c.TCPConn.ReadFrom(r)
}

type recListener struct {
	net.Listener
	conns chan *recConn
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recConn{TCPConn: c.(*net.TCPConn)}
	l.conns <- rc
	return rc, nil
}

// A hit from a blob file reaches the TCP connection's ReadFrom (sendfile)
// through the read-ahead wrapper, which used to hide it.
func TestReadaheadKeepsSendfile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, bytes.Repeat([]byte("pkgswarm"), 256<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recListener{Listener: ln, conns: make(chan *recConn, 4)}
	s := &Server{}
	hs := &http.Server{ConnContext: s.ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	})}
	go hs.Serve(s.Readahead(rl))
	t.Cleanup(func() { hs.Close() })
	resp, err := http.Get("http://" + ln.Addr().String() + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 2<<20 {
		t.Fatalf("GET: %d bytes, %v; want %d", n, err, 2<<20)
	}
	rc := <-rl.conns
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !slices.Contains(rc.from, "*os.File") {
		t.Errorf("the blob file never reached the connection's ReadFrom (sendfile); ReadFrom saw %q", rc.from)
	}
}

// Issue 13: requests a client pipelines one by one while a handler runs
// (apt sends the next as each answer arrives) are each started ahead as
// they arrive. The background read used to take in one read and then wait,
// so the requests behind waited for net/http to reach them.
func TestBackgroundReadKeepsScanning(t *testing.T) {
	t.Parallel()
	c := newPipeConn(t)
	client := c.client
	head := func(i int) []byte { return fmt.Appendf(nil, "GET /h/%d.deb HTTP/1.1\r\nHost: h\r\n\r\n", i) }
	go client.Write(head(1))
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != string(head(1)) {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	// The handler of request 1 runs; net/http reads one byte meanwhile.
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	for i := 2; i <= 4; i++ {
		go client.Write(head(i)) // a pipe's write waits for a reader
		want := fmt.Sprintf("/h/%d.deb", i)
		if !eventually(func() bool { return slices.Contains(c.started(), want) }) {
			t.Fatalf("request %d, sent while the handler of request 1 runs, was not started ahead (started %q)", i, c.started())
		}
	}
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the aborted background read returned %v", err)
	}
	c.SetReadDeadline(time.Time{})
	for i := 2; i <= 4; i++ {
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != string(head(i)) {
			t.Fatalf("read of request %d: %q, %v", i, buf[:n], err)
		}
	}
}

// A request head that arrives in pieces is still taken whole: the
// connection waits for its end before it hands anything out, as net/http
// would, so a hit cut by the network can still go the quick lane.
func TestHeadInPiecesIsHandedOutWhole(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	c := newRAConn(server, nil)
	defer c.Close()
	head := "GET /h/1.deb HTTP/1.1\r\nHost: h\r\n\r\n"
	go func() {
		for i := 0; i < len(head); i += 7 {
			client.Write([]byte(head[i:min(i+7, len(head))]))
		}
	}()
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != head {
		t.Fatalf("read %q, %v; want the whole head %q", buf[:n], err, head)
	}
}

// A connection closed twice (net/http closes one it is done with, then a
// server shutting down closes what it still lists as idle) returns at once
// the second time. It used to wait closeGrace for the quick lane's write
// token, which the first Close keeps: httptest's Close, which holds its lock
// meanwhile, took minutes to stop a node with a few dozen connections.
func TestSecondCloseDoesNotWait(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	c := newRAConn(server, nil)
	c.Close()
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace / 2):
		t.Fatalf("the second Close still waits after %v", closeGrace/2)
	}
}
