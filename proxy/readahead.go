package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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
	return &raConn{Conn: c, s: l.s, sem: make(chan struct{}, maxAhead)}, nil
}

// raConn is a connection whose incoming bytes are scanned for request heads.
// Writes pass through untouched; ReadFrom reaches the TCP connection's, so a
// hit from a blob file stays a sendfile.
type raConn struct {
	net.Conn
	s   *Server
	sem chan struct{} // bounds the requests started ahead
	// startFn, if set, replaces start (tests).
	startFn func(uri string)

	rmu     sync.Mutex // serializes reads; protects rbuf and pending
	rbuf    []byte     // a small read's buffer, allocated on first use
	pending []byte     // bytes of rbuf read from the connection, not yet handed out

	mu       sync.Mutex               // protects the fields below
	ahead    map[string]*fetch.Flight // downloads started ahead, by request URI, until their turn
	buf      []byte                   // bytes read but not yet seen to end a head
	off      bool                     // scanning stopped (a body, or no head end in maxScan)
	seen     int                      // request heads seen
	answered int                      // requests the server has finished
}

// readSize is what one read from the connection takes in at least. net/http
// reads a request through a 4 KiB buffer and, while a handler runs, one
// byte in the background; a read of that size would leave the heads behind
// it in the kernel (unseen by the read-ahead) until the server's buffer
// drained down to them.
const readSize = 4 << 10

func (c *raConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if len(p) >= readSize {
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.scan(p[:n])
		}
		return n, err
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, readSize)
	}
	n, err := c.Conn.Read(c.rbuf)
	if n > 0 {
		c.scan(c.rbuf[:n])
	}
	k := copy(p, c.rbuf[:n])
	c.pending = c.rbuf[k:n]
	if len(c.pending) > 0 {
		err = nil // the error comes again with the next read from the connection
	}
	return k, err
}

// ReadFrom hands r to the underlying connection's ReadFrom, where net/http's
// answer from a blob file becomes a sendfile.
func (c *raConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// scan appends b to the unscanned bytes and starts every complete GET head
// queued behind a request the server has not answered yet (a head with no
// unanswered request before it is the one the server handles next itself).
func (c *raConn) scan(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return
	}
	c.buf = append(c.buf, b...)
	for {
		end := bytes.Index(c.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(c.buf) > maxScan {
				c.off, c.buf = true, nil
			}
			return
		}
		head := c.buf[:end+4]
		method, uri, body := parseHead(head)
		c.buf = c.buf[end+4:]
		if body || method == "" {
			// A request with a body (or no request at all): the bytes that
			// follow are not heads. Stop looking on this connection.
			c.off, c.buf = true, nil
			return
		}
		c.seen++
		if c.seen-c.answered > 1 && method == http.MethodGet {
			if c.startFn != nil {
				c.startFn(uri)
			} else {
				c.start(uri)
			}
		}
	}
}

// parseHead reads a request head's method and URI, and whether a body
// follows it. It allocates only the two strings: it runs on every request.
func parseHead(head []byte) (method, uri string, body bool) {
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return "", "", false
	}
	m, after, ok1 := bytes.Cut(line, []byte(" "))
	u, proto, ok2 := bytes.Cut(after, []byte(" "))
	if !ok1 || !ok2 || len(m) == 0 || len(u) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || bytes.ContainsAny(proto, " ") {
		return "", "", false
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
	return string(m), string(u), body
}

// start begins the request uri ahead, bounded per connection; a request
// beyond the bound is not started ahead (the server will handle it in turn).
func (c *raConn) start(uri string) {
	select {
	case c.sem <- struct{}{}:
	default:
		return
	}
	remote := c.RemoteAddr().String()
	go func() {
		defer func() { <-c.sem }()
		if fl := c.s.Prefetch(remote, uri); fl != nil {
			c.mu.Lock()
			if c.ahead == nil {
				c.ahead = map[string]*fetch.Flight{}
			}
			c.ahead[uri] = fl
			c.mu.Unlock()
		}
	}()
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
// the request is refused) or the file held.
func (s *Server) Prefetch(remoteAddr, uri string) *fetch.Flight {
	if !s.clientAllowed(remoteAddr) {
		return nil
	}
	if !strings.HasPrefix(uri, "http://") && !strings.HasPrefix(uri, "https://") && isInternal(uri) {
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
	res, err := s.fetch.Get(ctx, plan.Request)
	if err != nil {
		return nil
	}
	return res.Flight
}
