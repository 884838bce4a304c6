package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Each status maps to one outcome: the file, ErrNotModified, ErrNotFound or
// a *fetch.StatusError carrying the code.
func TestStatusMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		code        int
		notFound    bool
		notModified bool
		unavailable bool
	}{
		{name: "not found", code: 404, notFound: true},
		{name: "gone", code: 410, notFound: true},
		{name: "not modified", code: 304, notModified: true},
		{name: "forbidden", code: 403},
		{name: "unauthorized", code: 401},
		{name: "range not satisfiable", code: 416},
		{name: "teapot", code: 418},
		{name: "internal error", code: 500, unavailable: true},
		{name: "service unavailable", code: 503, unavailable: true},
		{name: "bad gateway", code: 502, unavailable: true},
		{name: "no content", code: 204},
		{name: "multiple choices", code: 300},
	}
	srv := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.WriteHeader(code)
		if code != 304 && code != 204 {
			io.WriteString(w, "an error page")
		}
	}))
	c := newClient(t, loopback(srv.port))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := srv.URL + "/" + strconv.Itoa(tt.code)
			_, _, err := get(t, c, &fetch.Attempt{URL: u})
			if err == nil {
				t.Fatalf("status %d: no error", tt.code)
			}
			if !strings.Contains(err.Error(), u) {
				t.Errorf("error %q does not name the URL", err)
			}
			if got := errors.Is(err, fetch.ErrNotFound); got != tt.notFound {
				t.Errorf("errors.Is(ErrNotFound) = %v for %d (%v)", got, tt.code, err)
			}
			if got := errors.Is(err, fetch.ErrNotModified); got != tt.notModified {
				t.Errorf("errors.Is(ErrNotModified) = %v for %d (%v)", got, tt.code, err)
			}
			if got := fetch.IsUnavailable(err); got != tt.unavailable {
				t.Errorf("IsUnavailable = %v for %d (%v)", got, tt.code, err)
			}
			var se *fetch.StatusError
			if isStatus := errors.As(err, &se); isStatus != (!tt.notFound && !tt.notModified) {
				t.Errorf("status %d: *fetch.StatusError = %v (%v)", tt.code, isStatus, err)
			} else if isStatus && (se.Code != tt.code || se.URL != u) {
				t.Errorf("StatusError = %+v, want code %d url %s", se, tt.code, u)
			}
		})
	}
}

// A 200 is the file from byte 0 with its size, metadata and the URL as the
// peer; without Content-Length the size is unknown.
func TestOK(t *testing.T) {
	t.Parallel()
	payload := []byte("Package: hello\nVersion: 2.10\n")
	srv := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-debian-package")
		w.Header().Set("Last-Modified", "Tue, 01 Apr 2025 10:00:00 GMT")
		w.Header().Set("ETag", `"abc"`)
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
		}
		w.Write(payload)
	}))
	c := newClient(t, loopback(srv.port))
	for _, p := range []string{"/sized", "/chunked"} {
		u := srv.URL + p
		b, data, err := get(t, c, &fetch.Attempt{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		want := fetch.Meta{ContentType: "application/x-debian-package", LastModified: "Tue, 01 Apr 2025 10:00:00 GMT", ETag: `"abc"`}
		wantSize := int64(len(payload))
		if p == "/chunked" {
			wantSize = -1
		}
		if !bytes.Equal(data, payload) || b.Start != 0 || b.Size != wantSize || b.Meta != want || b.Peer != u {
			t.Errorf("%s: body %q start %d size %d meta %+v peer %s; want start 0 size %d meta %+v peer %s",
				p, data, b.Start, b.Size, b.Meta, b.Peer, wantSize, want, u)
		}
	}
}

// requestLog records the request headers a server received.
type requestLog struct {
	mu   sync.Mutex
	hdrs []http.Header
}

func (l *requestLog) add(h http.Header) {
	l.mu.Lock()
	l.hdrs = append(l.hdrs, h.Clone())
	l.mu.Unlock()
}

func (l *requestLog) last() http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hdrs[len(l.hdrs)-1]
}

// The request carries Range only for a positive offset, conditional headers
// only for a held copy at offset 0, pkgswarm's User-Agent, and never asks
// for compression.
func TestRequestHeaders(t *testing.T) {
	t.Parallel()
	var log requestLog
	srv := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r.Header)
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader("0123456789"))
	}))
	c := newClient(t, Config{AllowPorts: []int{srv.port}, Egress: Egress{AllowLoopback: true}, Version: "1.2.3"})
	held := &store.URLEntry{ETag: `"v1"`, LastModified: "Tue, 01 Apr 2025 10:00:00 GMT"}
	tests := []struct {
		name              string
		a                 fetch.Attempt
		rng, inm, ims     string
		wantStart, wantSz int64
	}{
		{name: "whole", a: fetch.Attempt{}, wantSz: 10},
		{name: "offset", a: fetch.Attempt{Offset: 4}, rng: "bytes=4-", wantStart: 4, wantSz: 10},
		{name: "conditional", a: fetch.Attempt{Conditional: held}, inm: `"v1"`, ims: held.LastModified, wantSz: 10},
		{name: "conditional etag only", a: fetch.Attempt{Conditional: &store.URLEntry{ETag: `"v2"`}}, inm: `"v2"`, wantSz: 10},
		{name: "conditional at an offset sends the range only", a: fetch.Attempt{Offset: 3, Conditional: held}, rng: "bytes=3-", wantStart: 3, wantSz: 10},
	}
	for _, tt := range tests {
		a := tt.a
		a.URL = srv.URL + "/dists/stable/Release"
		b, _, err := get(t, c, &a)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		h := log.last()
		if h.Get("Range") != tt.rng || h.Get("If-None-Match") != tt.inm || h.Get("If-Modified-Since") != tt.ims {
			t.Errorf("%s: Range %q If-None-Match %q If-Modified-Since %q; want %q %q %q", tt.name,
				h.Get("Range"), h.Get("If-None-Match"), h.Get("If-Modified-Since"), tt.rng, tt.inm, tt.ims)
		}
		if ua := h.Get("User-Agent"); ua != "pkgswarm/1.2.3" {
			t.Errorf("%s: User-Agent %q", tt.name, ua)
		}
		if ae := h.Get("Accept-Encoding"); ae != "" {
			t.Errorf("%s: Accept-Encoding %q: the origin could compress what must be verified as sent", tt.name, ae)
		}
		if b.Start != tt.wantStart || b.Size != tt.wantSz {
			t.Errorf("%s: start %d size %d, want %d %d", tt.name, b.Start, b.Size, tt.wantStart, tt.wantSz)
		}
	}
	// The default User-Agent.
	c2 := newClient(t, loopback(srv.port))
	if _, _, err := get(t, c2, &fetch.Attempt{URL: srv.URL + "/x"}); err != nil {
		t.Fatal(err)
	}
	if ua := log.last().Get("User-Agent"); ua != "pkgswarm/dev" {
		t.Errorf("User-Agent without a version: %q", ua)
	}
}

// A 206 is used from its first byte when it starts at or before the offset
// asked, and refused otherwise or when its Content-Range is not usable.
func TestPartialContent(t *testing.T) {
	t.Parallel()
	const file = "0123456789abcdefghij" // 20 bytes
	type answer struct {
		cr   []string // Content-Range values
		cl   int      // Content-Length, -1 for chunked
		body string
	}
	tests := []struct {
		name      string
		offset    int64
		ans       answer
		wantErr   string // substring; "" for success
		wantStart int64
		wantSize  int64
		wantBody  string
		readErr   string // the body fails at its end with this
	}{
		{name: "exact", offset: 5, ans: answer{cr: []string{"bytes 5-19/20"}, cl: 15, body: file[5:]}, wantStart: 5, wantSize: 20, wantBody: file[5:]},
		{name: "earlier start", offset: 5, ans: answer{cr: []string{"bytes 2-19/20"}, cl: 18, body: file[2:]}, wantStart: 2, wantSize: 20, wantBody: file[2:]},
		{name: "unknown total", offset: 5, ans: answer{cr: []string{"bytes 5-19/*"}, cl: -1, body: file[5:]}, wantStart: 5, wantSize: -1, wantBody: file[5:]},
		{name: "range at zero unasked", offset: 0, ans: answer{cr: []string{"bytes 0-19/20"}, cl: 20, body: file}, wantStart: 0, wantSize: 20, wantBody: file},
		{name: "later start", offset: 5, ans: answer{cr: []string{"bytes 6-19/20"}, cl: 14, body: file[6:]}, wantErr: "bytes 5-5 would be missing"},
		{name: "no content range", offset: 5, ans: answer{cl: 15, body: file[5:]}, wantErr: "0 Content-Range headers"},
		{name: "two content ranges", offset: 5, ans: answer{cr: []string{"bytes 5-19/20", "bytes 5-19/20"}, cl: 15, body: file[5:]}, wantErr: "2 Content-Range headers"},
		{name: "garbage", offset: 5, ans: answer{cr: []string{"bytes five-19/20"}, cl: 15, body: file[5:]}, wantErr: "unusable Content-Range"},
		{name: "negative", offset: 5, ans: answer{cr: []string{"bytes -5-19/20"}, cl: 15, body: file[5:]}, wantErr: "unusable Content-Range"},
		{name: "unsatisfied form", offset: 5, ans: answer{cr: []string{"bytes */20"}, cl: 15, body: file[5:]}, wantErr: "unusable Content-Range"},
		{name: "length mismatch", offset: 5, ans: answer{cr: []string{"bytes 5-19/20"}, cl: 10, body: file[5:15]}, wantErr: "Content-Length 10"},
		{name: "short range", offset: 5, ans: answer{cr: []string{"bytes 5-9/20"}, cl: 5, body: file[5:10]}, wantStart: 5, wantSize: 20, wantBody: file[5:10], readErr: "sent bytes 5-9 of 20 and stopped"},
		{name: "chunked past the range", offset: 5, ans: answer{cr: []string{"bytes 5-9/*"}, cl: -1, body: file[5:]}, wantStart: 5, wantSize: -1, wantBody: file[5:10]},
		{name: "chunked short of the range", offset: 5, ans: answer{cr: []string{"bytes 5-19/20"}, cl: -1, body: file[5:10]}, wantStart: 5, wantSize: 20, wantBody: file[5:10], readErr: "ended 10 bytes before the end of the range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, v := range tt.ans.cr {
					w.Header().Add("Content-Range", v)
				}
				if tt.ans.cl >= 0 {
					w.Header().Set("Content-Length", strconv.Itoa(tt.ans.cl))
				}
				w.WriteHeader(http.StatusPartialContent)
				if tt.ans.cl < 0 {
					w.(http.Flusher).Flush()
				}
				io.WriteString(w, tt.ans.body)
			}))
			c := newClient(t, loopback(srv.port))
			u := srv.URL + "/pool/f.deb"
			b, err := c.Fetch(context.Background(), &fetch.Attempt{URL: u, Offset: tt.offset})
			if tt.wantErr != "" {
				if err == nil {
					b.Close()
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), u) {
					t.Fatalf("error %q, want one naming %s and saying %q", err, u, tt.wantErr)
				}
				if fetch.IsNotFound(err) {
					t.Errorf("%v is not a 'not found'", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			data, rerr := io.ReadAll(b)
			if string(data) != tt.wantBody || b.Start != tt.wantStart || b.Size != tt.wantSize {
				t.Errorf("body %q start %d size %d; want %q %d %d", data, b.Start, b.Size, tt.wantBody, tt.wantStart, tt.wantSize)
			}
			switch {
			case tt.readErr == "" && rerr != nil:
				t.Errorf("reading: %v", rerr)
			case tt.readErr != "" && (rerr == nil || !strings.Contains(rerr.Error(), tt.readErr)):
				t.Errorf("reading: %v, want an error saying %q", rerr, tt.readErr)
			}
		})
	}
}

// Offline contacts nothing and says so with fetch.ErrOffline.
func TestOffline(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil, http.NotFoundHandler())
	cfg := loopback(srv.port)
	cfg.Offline = true
	c := newClient(t, cfg)
	_, _, err := get(t, c, &fetch.Attempt{URL: srv.URL + "/dists/x/InRelease"})
	if !errors.Is(err, fetch.ErrOffline) || !fetch.IsUnavailable(err) {
		t.Fatalf("offline fetch: %v, want ErrOffline", err)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Errorf("offline client made %d connections", n)
	}
}

// An origin that is not there is unavailable (a held copy may be served),
// and the error names the URL once.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := newClient(t, loopback(port))
	u := "http://127.0.0.1:" + strconv.Itoa(port) + "/dists/x/InRelease"
	_, _, err = get(t, c, &fetch.Attempt{URL: u})
	if err == nil || !fetch.IsUnavailable(err) || IsForbidden(err) {
		t.Fatalf("closed port: %v, want an unavailable error", err)
	}
	if strings.Count(err.Error(), u) != 1 {
		t.Errorf("error %q should name %s once", err, u)
	}
}
