package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Entry is one request the origin answered.
type Entry struct {
	Method, Path string
	Status       int
	Bytes        int64 // body bytes written
}

// Server is a running origin. Its methods are safe for concurrent use.
type Server struct {
	// URL is "http://127.0.0.1:PORT" without a trailing slash.
	URL  string
	Addr string
	Port int
	Dir  string

	runMu sync.Mutex   // protects srv
	srv   *http.Server // nil while stopped

	mu       sync.Mutex // protects log, active, conns, tampers, rates, connRate
	log      []Entry
	active   int                            // requests being answered
	conns    int                            // connections accepted since Start or ResetLog
	tampers  map[string]func([]byte) []byte // URL path -> tamper
	rates    map[string]int64               // URL path -> bytes per second
	connRate int64                          // bytes per second per connection; 0 for none
}

// Start serves dir on 127.0.0.1 at a free port below 32768.
func Start(dir string) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start origin for %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("start origin: %s is not a directory (%v)", dir, err)
	}
	ln, err := ListenLow()
	if err != nil {
		return nil, fmt.Errorf("start origin for %s: %w", dir, err)
	}
	s := &Server{Dir: abs, Addr: ln.Addr().String(), tampers: map[string]func([]byte) []byte{}, rates: map[string]int64{}}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	s.URL = "http://" + s.Addr
	s.serveOn(ln)
	return s, nil
}

func (s *Server) serveOn(ln net.Listener) {
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: time.Minute,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &connPacer{})
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.conns++
				s.mu.Unlock()
			}
		},
	}
	go s.srv.Serve(ln)
}

// Close stops the server and closes every connection, so new connections
// are refused, as when a mirror is down. Closing a stopped server does
// nothing.
func (s *Server) Close() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	s.srv = nil
	return err
}

// Restart serves again on the same address after Close.
func (s *Server) Restart() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.srv != nil {
		return nil
	}
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			s.serveOn(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("restart origin on %s: %w", s.Addr, err)
}

// ListenLow listens on a random free TCP port of 127.0.0.1 between 20000
// and 32767 (see the package doc for why below 32768).
func ListenLow() (net.Listener, error) {
	var last error
	for range 200 {
		port := 20000 + rand.IntN(32767-20000+1)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no free loopback port between 20000 and 32767 after 200 tries: %w", last)
}

// FreePort returns a loopback port below 32768 that was free a moment ago,
// for a server started by another program (which may lose a race for it:
// callers retry on a bind failure).
func FreePort() (int, error) {
	ln, err := ListenLow()
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// Tamper serves fn(bytes) instead of the file at urlPath (as requested,
// e.g. "/pool/main/h/hello/hello_2.10-3_amd64.deb") until Untamper. The
// file on disk is unchanged; the response carries no Last-Modified.
func (s *Server) Tamper(urlPath string, fn func([]byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tampers[urlPath] = fn
}

// Untamper serves urlPath's real bytes again.
func (s *Server) Untamper(urlPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tampers, urlPath)
}

// Throttle limits each response for urlPath to about bytesPerSecond (0
// removes the limit). The path "" sets the rate of every path that has
// none of its own. Each response is paced on its own: a client that opens
// more connections gets more in all (see PaceConnections for a rate that
// also spans the responses of one connection).
func (s *Server) Throttle(urlPath string, bytesPerSecond int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bytesPerSecond <= 0 {
		delete(s.rates, urlPath)
		return
	}
	s.rates[urlPath] = bytesPerSecond
}

// PaceConnections limits every connection to about bytesPerSecond of
// response bodies, over all the responses it carries (0 removes the
// limit): an origin that paces each connection, as many public mirrors
// and CDNs do, so that a client gets more only by opening more
// connections. It applies on top of Throttle's per-response rates, to
// responses that start after the call.
func (s *Server) PaceConnections(bytesPerSecond int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connRate = max(bytesPerSecond, 0)
}

// Log returns a copy of the requests answered since Start or ResetLog.
func (s *Server) Log() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.log...)
}

// ResetLog forgets the requests answered and the connections accepted so
// far.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log, s.conns = nil, 0
}

// WaitIdle waits until no request is being answered, for at most
// timeout, and reports whether the origin is idle. A request enters the
// log when its handler returns, just after its last byte went out, so a
// client can hold every byte a moment before the log shows the request:
// call WaitIdle after the clients are done and before Log, Count or
// Files, and before ResetLog when a client was just stopped.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		idle := s.active == 0
		s.mu.Unlock()
		if idle {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// Conns is the number of connections accepted since Start or ResetLog.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Files counts, per URL path, the GET requests answered with a body (200
// or 206) since Start or ResetLog: how many times the origin served each
// file. Requests answered with 304, 404 or another status serve nothing
// and are not counted; a path never served is absent.
func (s *Server) Files() map[string]int {
	out := map[string]int{}
	for _, e := range s.Log() {
		if e.Method == http.MethodGet && (e.Status == http.StatusOK || e.Status == http.StatusPartialContent) {
			out[e.Path]++
		}
	}
	return out
}

// Count sums the GET requests, and their body bytes, whose path ends with
// suffix ("" matches all).
func (s *Server) Count(suffix string) (requests int, bytes int64) {
	for _, e := range s.Log() {
		if e.Method == http.MethodGet && strings.HasSuffix(e.Path, suffix) {
			requests++
			bytes += e.Bytes
		}
	}
	return requests, bytes
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	cw := &countingWriter{ResponseWriter: w}
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.log = append(s.log, Entry{Method: r.Method, Path: r.URL.Path, Status: cw.status(), Bytes: cw.n})
		s.active--
		s.mu.Unlock()
	}()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		cw.Header().Set("Allow", "GET, HEAD")
		http.Error(cw, "origin: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	clean := path.Clean("/" + r.URL.Path)
	f, err := os.Open(filepath.Join(s.Dir, filepath.FromSlash(clean)))
	if err != nil {
		http.Error(cw, "origin: not found: "+clean, http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(cw, "origin: not a file: "+clean, http.StatusNotFound)
		return
	}
	s.mu.Lock()
	tamper, rate, connRate := s.tampers[r.URL.Path], s.rates[r.URL.Path], s.connRate
	if rate == 0 {
		rate = s.rates[""]
	}
	s.mu.Unlock()
	var content io.ReadSeeker = f
	mod := fi.ModTime()
	if tamper != nil {
		b, err := io.ReadAll(f)
		if err != nil {
			http.Error(cw, "origin: read "+clean+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		b = tamper(b)
		sum := sha256.Sum256(b)
		cw.Header().Set("ETag", fmt.Sprintf(`"t-%x"`, sum[:8]))
		content, mod = bytes.NewReader(b), time.Time{}
	}
	var out http.ResponseWriter = cw
	var pacers []*pacer
	if rate > 0 {
		pacers = append(pacers, &pacer{rate: rate})
	}
	if cp, ok := r.Context().Value(connKey{}).(*connPacer); ok && connRate > 0 {
		cp.p.rate = connRate
		pacers = append(pacers, &cp.p)
	}
	if len(pacers) > 0 {
		out = &pacedWriter{ResponseWriter: cw, pacers: pacers, ctx: r.Context()}
	}
	http.ServeContent(out, r, path.Base(clean), mod, content)
}

// countingWriter counts body bytes and keeps sendfile: ReadFrom hands the
// file to the connection's own ReadFrom.
type countingWriter struct {
	http.ResponseWriter
	n    int64
	code int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	c.n += n
	return n, err
}

func (c *countingWriter) status() int {
	if c.code == 0 {
		return http.StatusOK
	}
	return c.code
}
