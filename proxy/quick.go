package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
)

// The quick lane. Most requests of a warm apt run, and every request of an
// office's second machine, are hits on small packages. Through net/http each
// costs a request parse into maps, a goroutine for the background read, the
// handler chain, a copy through a 32 KiB buffer and two writes (head, then
// body). A connection wrapped by Readahead answers such a request itself
// instead, when net/http is between requests: it reads the head off the
// socket, asks trust whether the package is held (no wait, no fetch), and
// writes head and body in one writev. Everything else, and every request
// that asks more than a whole 200 of a file held in memory, goes to net/http
// unchanged; see quickURI for what qualifies and raConn.Read for when.

// quickURI returns the request URI of a head the quick lane may answer: a GET
// over HTTP/1.1 with CRLF line ends, exactly one Host, header names that are
// plain tokens and values free of control bytes, and no header that asks for
// more than a whole 200: no Range or conditional, no body, no Connection
// other than keep-alive, no Expect, Upgrade or Trailer. head runs through
// its blank line. What net/http might read differently is never quick: it
// is left to net/http.
func quickURI(head []byte) ([]byte, bool) {
	line, rest, ok := bytes.Cut(head, crlf)
	const get, proto = "GET ", " HTTP/1.1"
	if !ok || len(line) <= len(get)+len(proto) || !bytes.HasPrefix(line, []byte(get)) || !bytes.HasSuffix(line, []byte(proto)) {
		return nil, false
	}
	uri := line[len(get) : len(line)-len(proto)]
	for _, b := range uri {
		if b <= ' ' || b >= 0x7f {
			return nil, false
		}
	}
	hosts := 0
	for {
		var h []byte
		h, rest, ok = bytes.Cut(rest, crlf)
		if !ok {
			return nil, false
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok || !plainToken(name) {
			return nil, false
		}
		value = bytes.Trim(value, " \t")
		for _, b := range value {
			if (b < ' ' && b != '\t') || b == 0x7f {
				return nil, false
			}
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			if !plainHost(value) {
				return nil, false
			}
		case bytes.EqualFold(name, []byte("Connection")), bytes.EqualFold(name, []byte("Proxy-Connection")):
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return nil, false
			}
		case notQuick(name):
			return nil, false
		}
	}
	if hosts != 1 || len(rest) != 0 {
		return nil, false
	}
	return uri, true
}

var crlf = []byte("\r\n")

// notQuickHeaders ask more of an answer than a whole 200, or announce a body.
var notQuickHeaders = [][]byte{
	[]byte("Range"), []byte("If-Range"), []byte("If-Match"), []byte("If-None-Match"),
	[]byte("If-Modified-Since"), []byte("If-Unmodified-Since"), []byte("Content-Length"),
	[]byte("Transfer-Encoding"), []byte("Expect"), []byte("Upgrade"), []byte("Trailer"),
}

func notQuick(name []byte) bool {
	for _, n := range notQuickHeaders {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// plainToken reports whether b is a header name of letters, digits and
// dashes only (a subset of RFC 9110's token).
func plainToken(b []byte) bool { return onlyAlnumOr(b, "-") }

// plainHost reports whether b is a Host value of letters, digits and
// ".-_:[]" only (a subset of what net/http accepts).
func plainHost(b []byte) bool { return onlyAlnumOr(b, ".-_:[]") }

// onlyAlnumOr reports whether b is not empty and holds only ASCII letters,
// digits and the bytes of extra.
func onlyAlnumOr(b []byte, extra string) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// quick answers the request uri of a client at remote when it is a hit the
// lane can take: an allowed client, a repository file on an allowed port, a
// package trust vouches for whose blob is held and small enough for memory.
// It returns the answer's head and body, or ok false (then net/http answers,
// exactly as before). The answer is the one serveBlob gives a plain GET.
func (s *Server) quick(dst []byte, uri string, t target.Target) (head, body []byte, ok bool) {
	d, ok := s.heldSmall(uri, t)
	if !ok {
		return nil, nil, false
	}
	body, ok = s.mem.get(d)
	if !ok {
		if body, ok = s.loadSmall(d); !ok {
			return nil, nil, false
		}
	}
	return quickHead(dst, t, d, len(body)), body, true
}

// quickServes reports whether the lane answers a client at remote at all;
// it is asked before a URI is parsed (a client the lane does not serve
// fills no memo).
func (s *Server) quickServes(remote string) bool {
	return s != nil && s.mem != nil && !s.noQuick && s.clientAllowed(remote)
}

// heldSmall reports whether the request uri (target t) of a client the
// lane serves (quickServes) is one it answers, and the blob that answers it.
func (s *Server) heldSmall(uri string, t target.Target) (store.Digest, bool) {
	if ownEndpoint(uri) || !s.portAllowed(t.Port) {
		return store.Digest{}, false
	}
	d, size, ok := s.trust.HeldPackage(t)
	if !ok || size > memEntryMax {
		return store.Digest{}, false
	}
	return d, true
}

// targetMemo keeps target.Parse's results for the quick lane: a hot file is
// asked for by the same URI again and again (every client of an office,
// every round of a benchmark), and parsing it was over a quarter of the
// lane's CPU per hit in a profile, and four allocations. Parse is a function of the URI alone, so an entry
// never goes stale; the map is emptied when it holds maxMemoTargets. Only
// URIs that parse and are at most maxMemoURI bytes long are kept (a client
// sending long URIs must not fill memory): at most about 1.5 MB.
type targetMemo struct {
	mu sync.RWMutex
	m  map[string]memoTarget
}

type memoTarget struct {
	uri string // the key, handed out instead of a new string
	t   target.Target
}

const (
	maxMemoTargets = 1024
	maxMemoURI     = 512
)

// quickTarget returns the request URI uri as a string and its target, ok
// false when it does not parse. A URI seen before costs no allocation.
func (s *Server) quickTarget(uri []byte) (string, target.Target, bool) {
	s.targets.mu.RLock()
	e, ok := s.targets.m[string(uri)]
	s.targets.mu.RUnlock()
	if ok {
		return e.uri, e.t, true
	}
	u := string(uri)
	t, ok := s.targets.parse(u)
	return u, t, ok
}

// target returns uri's target, from the memo or parsed (and kept); ok false
// when it does not parse. quickTarget is the same for a URI still in bytes.
func (m *targetMemo) target(uri string) (target.Target, bool) {
	m.mu.RLock()
	e, ok := m.m[uri]
	m.mu.RUnlock()
	if ok {
		return e.t, true
	}
	return m.parse(uri)
}

// parse parses uri, keeping the result if it parses and is short enough.
func (m *targetMemo) parse(uri string) (target.Target, bool) {
	t, err := target.Parse(uri)
	if err != nil {
		return target.Target{}, false
	}
	if len(uri) > maxMemoURI {
		return t, true
	}
	m.mu.Lock()
	if m.m == nil || len(m.m) >= maxMemoTargets {
		m.m = make(map[string]memoTarget, 64)
	}
	m.m[uri] = memoTarget{uri: uri, t: t}
	m.mu.Unlock()
	return t, true
}

// heldSmallURI is heldSmall for a request URI not parsed yet, of a client
// at remote.
func (s *Server) heldSmallURI(uri, remote string) bool {
	if !s.quickServes(remote) {
		return false
	}
	t, ok := s.targets.target(uri)
	if !ok {
		return false
	}
	_, held := s.heldSmall(uri, t)
	return held
}

// loadSmall reads the small blob d into the memory cache.
func (s *Server) loadSmall(d store.Digest) ([]byte, bool) {
	f, size, err := s.st.OpenBlob(d)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	return s.remember(d, f, size)
}

// quickHead appends to b the head of a 200 for blob d of n bytes: the
// headers serveBlob and http.ServeContent give a plain GET of a held
// package, in net/http's order.
func quickHead(b []byte, t target.Target, d store.Digest, n int) []byte {
	b = append(b, "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, contentType(t.Path)...)
	b = append(b, "\r\nDate: "...)
	b = append(b, httpDate()...)
	b = append(b, "\r\nEtag: "...)
	b = appendETag(b, d)
	b = append(b, "\r\nX-Pkgswarm-Source: cache\r\n\r\n"...)
	return b
}

// httpDate is the Date header's value now, formatted once per second.
func httpDate() string {
	now := time.Now()
	if c := dateCache.Load(); c != nil && c.sec == now.Unix() {
		return c.s
	}
	c := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(c)
	return c.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

// quickDone counts and logs a hit the lane answers with n body bytes, as the
// status wrapper does for the others. It runs before the answer is written,
// so that a client that has read the answer and then reads the status or
// the log finds it there (dur is the time to prepare the answer).
func (s *Server) quickDone(uri, remote string, n int, start time.Time) {
	if s.cfg.QuickHit != nil {
		s.cfg.QuickHit(int64(n))
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("request", "method", http.MethodGet, "uri", uri, "client", remote,
			"status", http.StatusOK, "bytes", n, "source", "cache; quick", "dur", time.Since(start).Round(time.Microsecond))
	}
}
