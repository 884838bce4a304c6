package testrepo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Request is one request an Origin received.
type Request struct {
	Method string
	// Path is the URL path as requested (not cleaned), without the query.
	Path            string
	Range           string // the Range header, "" if none
	IfModifiedSince string
	IfNoneMatch     string
	UserAgent       string
	// Remote is the client's address: requests with the same one came on
	// the same connection.
	Remote string
	// Status is the response status; 0 while the response is still being
	// written.
	Status int
	// Bytes counts the body bytes written so far.
	Bytes int64
	// Aborted is true when a Fault.CutAfter or Stop cut the body short.
	Aborted bool
}

// Fault changes how an Origin answers the paths it is set for. Zero fields
// change nothing.
type Fault struct {
	// Delay is waited before the response headers are sent (or until the
	// client goes away).
	Delay time.Duration
	// BytesPerSecond, when positive, paces the body to about that rate.
	BytesPerSecond int64
	// Status, when non-zero, answers with that status and a one-line body
	// instead of the file.
	Status int
	// CutAfter, when positive, aborts the connection after that many body
	// bytes, so the client sees a short body (a dying origin).
	CutAfter int64
	// HoldEnd, when positive, sends a whole-file GET without Content-Length
	// (chunked) and holds back the end of the body this long after its last
	// byte: the client has every byte well before it can tell the body is
	// complete (a slow or stalling origin at the end of a file).
	HoldEnd time.Duration
	// Tamper, when non-nil, is applied to the file's bytes before they are
	// served; the file on disk is not changed. It may be called
	// concurrently and must not keep or change its argument.
	Tamper func([]byte) []byte
}

// Origin is a real HTTP server on 127.0.0.1 serving a directory as a
// package mirror does: GET and HEAD with Last-Modified, If-Modified-Since,
// ETag, If-None-Match and Range (all from http.ServeContent), 404 for
// directories and missing files. It logs every request and can inject
// faults. It is safe for concurrent use.
type Origin struct {
	// URL is "http://127.0.0.1:PORT" ("https://" for ServeTLS), without a
	// trailing slash. It stays the same across Stop and Start.
	URL string
	// Addr is "127.0.0.1:PORT".
	Addr string
	// Dir is the directory served.
	Dir string

	mu     sync.Mutex
	srv    *http.Server     // nil while stopped; protected by mu
	done   chan struct{}    // closed when srv's Serve returns; protected by mu
	log    []*Request       // protected by mu; entries mutated under mu
	faults map[string]Fault // path suffix -> fault; protected by mu
	active *sync.WaitGroup  // handlers of srv still running; protected by mu
	tls    *tlsSetup        // nil for plain HTTP; set once at creation
}

// Serve starts an Origin over dir for a test and stops it when the test
// ends.
func Serve(t testing.TB, dir string) *Origin {
	t.Helper()
	o, err := ServeDir(dir)
	if err != nil {
		t.Fatalf("testrepo: %v", err)
	}
	t.Cleanup(o.Stop)
	return o
}

// ServeDir starts an Origin over dir on a free loopback port: the non-test
// variant. Call Stop when done.
func ServeDir(dir string) (*Origin, error) { return serveDir(dir, nil) }

func serveDir(dir string, tlsSet *tlsSetup) (*Origin, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("serve %s: not a directory (%v)", dir, err)
	}
	o := &Origin{Dir: abs, faults: map[string]Fault{}, tls: tlsSet}
	ln, err := o.listen("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serve %s: listen on loopback: %w", dir, err)
	}
	o.Addr = ln.Addr().String()
	o.URL = "http://" + o.Addr
	if tlsSet != nil {
		o.URL = "https://" + o.Addr
	}
	o.mu.Lock()
	o.startLocked(ln)
	o.mu.Unlock()
	return o, nil
}

func (o *Origin) startLocked(ln net.Listener) {
	active := new(sync.WaitGroup)
	srv := &http.Server{}
	*srv = http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Count the handler only while srv is current: Stop clears
			// o.srv (under mu) before it waits, so no Add races its Wait.
			o.mu.Lock()
			current := o.srv == srv
			if current {
				active.Add(1)
			}
			o.mu.Unlock()
			if !current {
				panic(http.ErrAbortHandler) // stopped: drop the connection
			}
			defer active.Done()
			o.serveHTTP(w, r)
		}),
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	o.srv, o.done, o.active = srv, done, active
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
}

// Stop closes the listener and every open connection, so new connections
// are refused and downloads in flight break, as when an origin goes down.
// It returns once every handler has finished, so Log is final. Stopping a
// stopped Origin does nothing. (While stopped, the port is free: another
// process could take it, and Start would then fail.)
func (o *Origin) Stop() {
	o.mu.Lock()
	srv, done, active := o.srv, o.done, o.active
	o.srv = nil
	o.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	<-done
	// Closing the connections cancels every request's context, so handlers
	// sleeping in a Delay or Throttle return promptly; wait for them so the
	// log is final when Stop returns.
	active.Wait()
}

// Start serves again on the same address after Stop. Starting a running
// Origin does nothing.
func (o *Origin) Start() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.srv != nil {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	// Go listeners set SO_REUSEADDR, so connections in TIME_WAIT do not
	// block the port; retry briefly in case the kernel still holds it.
	for range 50 {
		if ln, err = o.listen(o.Addr); err == nil {
			o.startLocked(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("restart origin on %s: %w", o.Addr, err)
}

// Running reports whether the Origin is accepting connections.
func (o *Origin) Running() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.srv != nil
}

// Requests counts the GET requests whose path ends with suffix ("" counts
// all GETs).
func (o *Origin) Requests(suffix string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.log {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

// Log returns a copy of the requests received since the start or the last
// ResetLog, oldest first.
func (o *Origin) Log() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Request, len(o.log))
	for i, r := range o.log {
		out[i] = *r
	}
	return out
}

// ResetLog forgets the requests received so far.
func (o *Origin) ResetLog() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.log = nil
}

// SetFault sets the fault for paths ending with suffix ("" matches every
// path), replacing any fault set for that same suffix. When several
// suffixes match a request, each Fault field is taken from the longest
// matching suffix that sets it.
func (o *Origin) SetFault(suffix string, f Fault) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.faults[suffix] = f
}

// ClearFault removes the fault set for suffix.
func (o *Origin) ClearFault(suffix string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.faults, suffix)
}

// ClearFaults removes every fault.
func (o *Origin) ClearFaults() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.faults)
}

func (o *Origin) updateFault(suffix string, fn func(*Fault)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.faults[suffix]
	fn(&f)
	if f.Delay == 0 && f.BytesPerSecond == 0 && f.Status == 0 && f.CutAfter == 0 && f.Tamper == nil {
		delete(o.faults, suffix)
		return
	}
	o.faults[suffix] = f
}

// Tamper serves fn(bytes) instead of the file's bytes for paths ending with
// suffix, from now on, without changing the file on disk. Tampered
// responses carry no Last-Modified (so If-Modified-Since cannot turn them
// into a 304) and an ETag of their own; Range applies to the tampered
// bytes.
func (o *Origin) Tamper(suffix string, fn func([]byte) []byte) {
	o.updateFault(suffix, func(f *Fault) { f.Tamper = fn })
}

// Untamper undoes Tamper for suffix.
func (o *Origin) Untamper(suffix string) {
	o.updateFault(suffix, func(f *Fault) { f.Tamper = nil })
}

// SetDelay delays the response headers for paths ending with suffix by d
// (0 removes the delay).
func (o *Origin) SetDelay(suffix string, d time.Duration) {
	o.updateFault(suffix, func(f *Fault) { f.Delay = d })
}

// Throttle paces bodies for paths ending with suffix to about
// bytesPerSecond (0 removes the limit).
func (o *Origin) Throttle(suffix string, bytesPerSecond int64) {
	o.updateFault(suffix, func(f *Fault) { f.BytesPerSecond = bytesPerSecond })
}

// FailWith answers paths ending with suffix with status (0 removes it).
func (o *Origin) FailWith(suffix string, status int) {
	o.updateFault(suffix, func(f *Fault) { f.Status = status })
}

// CutAfter aborts bodies for paths ending with suffix after n bytes (0
// removes it).
func (o *Origin) CutAfter(suffix string, n int64) {
	o.updateFault(suffix, func(f *Fault) { f.CutAfter = n })
}

// faultFor merges the faults matching p, longest suffix first.
func (o *Origin) faultFor(p string) Fault {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sfx []string
	for s := range o.faults {
		if strings.HasSuffix(p, s) {
			sfx = append(sfx, s)
		}
	}
	slices.SortFunc(sfx, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	var f Fault
	for _, s := range sfx {
		g := o.faults[s]
		f.Delay = cmp.Or(f.Delay, g.Delay)
		f.BytesPerSecond = cmp.Or(f.BytesPerSecond, g.BytesPerSecond)
		f.Status = cmp.Or(f.Status, g.Status)
		f.CutAfter = cmp.Or(f.CutAfter, g.CutAfter)
		f.HoldEnd = cmp.Or(f.HoldEnd, g.HoldEnd)
		if f.Tamper == nil {
			f.Tamper = g.Tamper
		}
	}
	return f
}

func (o *Origin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	entry := &Request{
		Method:          r.Method,
		Path:            r.URL.Path,
		Range:           r.Header.Get("Range"),
		IfModifiedSince: r.Header.Get("If-Modified-Since"),
		IfNoneMatch:     r.Header.Get("If-None-Match"),
		UserAgent:       r.Header.Get("User-Agent"),
		Remote:          r.RemoteAddr,
	}
	o.mu.Lock()
	o.log = append(o.log, entry)
	o.mu.Unlock()

	f := o.faultFor(r.URL.Path)
	rw := &faultWriter{ResponseWriter: w, o: o, entry: entry, fault: f, ctx: r.Context()}
	defer rw.finish()

	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			rw.setStatus(499) // client went away; nothing was sent
			return
		}
	}
	if f.Status != 0 {
		http.Error(rw, fmt.Sprintf("testrepo origin: injected status %d for %s", f.Status, r.URL.Path), f.Status)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		rw.Header().Set("Allow", "GET, HEAD")
		http.Error(rw, "testrepo origin: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	name := filepath.Join(o.Dir, filepath.FromSlash(path.Clean("/"+r.URL.Path)))
	file, err := os.Open(name)
	if err != nil {
		http.Error(rw, "testrepo origin: not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(rw, "testrepo origin: not a file: "+r.URL.Path, http.StatusNotFound)
		return
	}
	var content io.ReadSeeker = file
	modTime := fi.ModTime()
	etag := fmt.Sprintf(`"%x-%x"`, modTime.UnixNano(), fi.Size())
	if f.Tamper != nil {
		// No Last-Modified for tampered bytes, so If-Modified-Since never
		// answers 304 and a revalidating client always sees the tamper;
		// the ETag is the tampered bytes' own.
		modTime = time.Time{}
		b, err := io.ReadAll(file)
		if err != nil {
			http.Error(rw, "testrepo origin: read "+r.URL.Path+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		b = f.Tamper(b)
		sum := sha256.Sum256(b)
		etag = fmt.Sprintf(`"t%x"`, sum[:8])
		content = bytes.NewReader(b)
	}
	rw.Header().Set("ETag", etag)
	if f.HoldEnd > 0 && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		rw.Header().Set("Content-Type", "application/octet-stream")
		rw.WriteHeader(http.StatusOK)
		io.Copy(rw, content)
		rw.Flush()
		t := time.NewTimer(f.HoldEnd)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		return
	}
	http.ServeContent(rw, r, path.Base(r.URL.Path), modTime, content)
}

// faultWriter records status and byte count, and applies a Fault's
// throttle and cut to the body.
type faultWriter struct {
	http.ResponseWriter
	o     *Origin
	entry *Request
	fault Fault
	ctx   context.Context

	wroteHeader bool
	written     int64
	start       time.Time
}

func (w *faultWriter) setStatus(code int) {
	w.o.mu.Lock()
	w.entry.Status = code
	w.o.mu.Unlock()
}

func (w *faultWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.setStatus(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.start.IsZero() {
		w.start = time.Now()
	}
	total := 0
	for len(p) > 0 {
		chunk := p
		if bps := w.fault.BytesPerSecond; bps > 0 {
			chunk = p[:min(len(p), int(max(bps/20, 512)))]
		}
		if cut := w.fault.CutAfter; cut > 0 && w.written+int64(len(chunk)) >= cut {
			chunk = chunk[:cut-w.written]
			n, _ := w.ResponseWriter.Write(chunk)
			w.count(n)
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			w.abort()
		}
		n, err := w.ResponseWriter.Write(chunk)
		w.count(n)
		total += n
		if err != nil {
			return total, err
		}
		p = p[len(chunk):]
		if bps := w.fault.BytesPerSecond; bps > 0 {
			if fl, ok := w.ResponseWriter.(http.Flusher); ok {
				fl.Flush()
			}
			due := w.start.Add(time.Duration(float64(w.written) / float64(bps) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-w.ctx.Done():
					t.Stop()
					return total, w.ctx.Err()
				}
			}
		}
	}
	return total, nil
}

// Flush lets http.ServeContent's writes reach the client promptly.
func (w *faultWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (w *faultWriter) count(n int) {
	w.written += int64(n)
	w.o.mu.Lock()
	w.entry.Bytes = w.written
	w.o.mu.Unlock()
}

// abort ends the response without completing it: net/http closes the
// connection, and the client sees fewer bytes than Content-Length.
func (w *faultWriter) abort() {
	w.o.mu.Lock()
	w.entry.Aborted = true
	w.o.mu.Unlock()
	panic(http.ErrAbortHandler)
}

// finish records the final status, and marks the entry aborted when fewer
// body bytes went out than Content-Length promised (a Stop, or the client
// leaving, mid-body).
func (w *faultWriter) finish() {
	if v := recover(); v != nil {
		panic(v) // http.ErrAbortHandler from abort, already recorded
	}
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.entry.Status == 0 {
		w.entry.Status = http.StatusOK
	}
	if w.entry.Method == http.MethodHead {
		return
	}
	if cl, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && w.written < cl {
		w.entry.Aborted = true
	}
}
