package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// flight is one download in progress. Every client asking for the same key
// while it runs joins it: one download, many readers (DESIGN.md, "Content
// store": concurrent requests start one download).
type flight struct {
	key    string // "sha256:<hex>" for verified content, "url:<URL>" otherwise
	url    string // canonical URL, for logs and the dashboard
	expect *repoindex.Expectation
	size   atomic.Int64 // expected size, -1 when unknown (set before ready closes)
	start  time.Time
	w      *store.Writer

	ready     chan struct{} // closed once bytes may flow (a source answered)
	verified  chan struct{} // closed when the bytes matched the expectation, before the commit
	leading   atomic.Bool   // past the LAN tier: this node fetches for the site
	readyOnce sync.Once
	done      chan struct{} // closed when finished; fields below are then set

	mu     sync.Mutex // protects source and meta until done
	source string     // tier serving (then, having served) the bytes
	meta   entryMeta  // response metadata for URL-cached files

	err    error        // final error; nil on success
	digest store.Digest // committed digest on success
	status int          // HTTP status to pass on when err is an origin answer (404)
}

// entryMeta is what a cached response carries besides its bytes.
type entryMeta struct {
	ContentType, LastModified, ETag string
}

func (f *flight) markReady(source string) {
	f.mu.Lock()
	f.source = source
	f.mu.Unlock()
	f.readyOnce.Do(func() { close(f.ready) })
}

func (f *flight) setSource(source string, meta entryMeta) {
	f.mu.Lock()
	f.source, f.meta = source, meta
	f.mu.Unlock()
}

func (f *flight) sourceName() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.source
}

// flights coalesces downloads by key.
type flights struct {
	mu sync.Mutex // protects m
	m  map[string]*flight
}

// join returns the running flight for key, or starts one with run. started
// reports whether this call started it.
func (s *Server) join(key, url string, exp *repoindex.Expectation, size int64, run func(ctx context.Context, f *flight) error) (*flight, error) {
	s.flights.mu.Lock()
	if f, ok := s.flights.m[key]; ok {
		s.flights.mu.Unlock()
		return f, nil
	}
	w, err := s.store.NewWriter()
	if err != nil {
		s.flights.mu.Unlock()
		return nil, fmt.Errorf("cannot start download of %s: %w", url, err)
	}
	f := &flight{key: key, url: url, expect: exp, start: time.Now(), w: w,
		ready: make(chan struct{}), verified: make(chan struct{}), done: make(chan struct{})}
	f.size.Store(size)
	s.flights.m[key] = f
	s.flights.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// A download outlives the client that started it: the next client
		// (and every peer) benefits from a finished file.
		ctx, cancel := context.WithTimeout(s.ctx, s.downloadTimeout)
		defer cancel()
		err := run(ctx, f)
		if err != nil {
			f.w.Abort(err)
		}
		s.flights.mu.Lock()
		delete(s.flights.m, key)
		s.flights.mu.Unlock()
		f.err = err
		// done closes before ready (when no source ever answered), so a
		// waiter woken by ready always sees done and never follows a
		// writer that was aborted without a byte.
		close(f.done)
		f.readyOnce.Do(func() { close(f.ready) })
	}()
	return f, nil
}

// attempt is one source tried for a verified file.
type attempt struct {
	src Source
	req Request
}

// runVerified fills f from the peer tiers, then each origin candidate,
// resuming at the current offset when a source fails mid-stream, and commits
// only bytes whose size and digest match the expectation.
func (s *Server) runVerified(ctx context.Context, f *flight, t Target, candidates []string) error {
	exp := f.expect
	var attempts []attempt
	for _, p := range s.cfg.Peers {
		attempts = append(attempts, attempt{src: p, req: Request{URL: t.URL, FetchURL: t.URL, Expect: exp}})
	}
	if !s.cfg.Offline {
		for _, u := range candidates {
			attempts = append(attempts, attempt{src: s.origin, req: Request{URL: t.URL, FetchURL: u, Expect: exp}})
		}
	}
	var want store.Digest
	copy(want[:], exp.SHA256)

	var contributed []attemptRef
	var lastErr, verifyErr error
	for i := range attempts {
		a := &attempts[i]
		if a.src.Name() != "lan" {
			f.leading.Store(true)
		}
		off := f.w.Size()
		actx, cancel := context.WithCancelCause(ctx)
		body, start, err := a.src.Fetch(actx, &a.req, off)
		if err != nil {
			cancel(nil)
			if !errors.Is(err, ErrNotFound) {
				s.log.Warn("source failed", "source", a.src.Name(), "url", a.req.FetchURL, "err", err)
			}
			lastErr = err
			continue
		}
		peer := ""
		if pr, ok := body.(PeerReporter); ok {
			peer = pr.Peer()
		} else if a.src.Name() == "origin" {
			peer = a.req.FetchURL
		}
		contributed = append(contributed, attemptRef{a: a, who: Attempt{Source: a.src.Name(), Peer: peer}})
		f.markReady(a.src.Name())
		// A source that stops sending (a peer seeding a corrupt file whose
		// pieces all fail, a hung connection) must not hold the download:
		// after s.stall without a byte the attempt is cut and the next source
		// resumes.
		sr := newStallReader(body, s.stall, cancel)
		n, err := s.copyInto(f, sr, start, off, exp.Size)
		sr.stop()
		body.Close()
		cancel(nil)
		if err != nil && sr.stalled() {
			err = fmt.Errorf("%s sent nothing for %v: %w", a.src.Name(), s.stall, err)
		}
		s.metrics.sourceBytes.WithLabelValues(a.src.Name()).Add(float64(n))
		if err != nil && !errors.Is(err, errTooLong) && exp.Size >= 0 && f.w.Size() >= exp.Size {
			// Every byte arrived, then the source failed (the swarm reader's
			// own whole-file check): there is nothing to resume. The digest
			// decides; on a mismatch verifyFailed resets and the next source
			// starts from zero.
			s.log.Warn("source failed after its last byte", "source", a.src.Name(), "peer", peer, "url", t.URL, "err", err)
			err = nil
		}
		if err != nil && !errors.Is(err, errTooLong) {
			// Resume from the next source at the current offset.
			s.log.Warn("source stopped mid-file", "source", a.src.Name(), "peer", peer, "url", t.URL, "offset", f.w.Size(), "err", err)
			lastErr = err
			continue
		}
		got := f.w.Size()
		if err == nil && exp.Size >= 0 && got < exp.Size {
			lastErr = fmt.Errorf("%s sent %d of %d bytes of %s", a.src.Name(), got, exp.Size, t.URL)
			continue
		}
		sum := f.w.Sum()
		if err == nil && (exp.SHA256 == nil || sum == want) && (exp.Size < 0 || got == exp.Size) {
			if exp.Check != nil {
				if cerr := s.checkWriter(f.w, exp); cerr != nil {
					verifyErr = s.verifyFailed(f, t, contributed, cerr.Error())
					contributed = nil
					continue
				}
			}
			if exp.SHA256 == nil {
				want = sum
			}
			// Waiting clients may be answered from the download while
			// Commit makes it durable (its followers end once the digest
			// matched).
			close(f.verified)
			if err := f.w.Commit(want); err != nil {
				return fmt.Errorf("storing %s (sha256 %s): %w", t.URL, want, err)
			}
			f.digest = want
			return nil
		}
		reason := fmt.Sprintf("sha256 mismatch for %s: got %s (%d bytes), signed root %s expects %s (%d bytes)",
			t.URL, sum, got, exp.Root, exp.Hex(), exp.Size)
		if errors.Is(err, errTooLong) {
			reason = fmt.Sprintf("size mismatch for %s: %s sent more than the %d bytes signed root %s lists", t.URL, a.src.Name(), exp.Size, exp.Root)
		}
		verifyErr = s.verifyFailed(f, t, contributed, reason)
		contributed = nil
	}
	if verifyErr != nil {
		// The file exists but no source sent it intact: that, not a later
		// source's "not found", is what the client must hear.
		return verifyErr
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no source has %s: %w", t.URL, ErrNotFound)
	}
	return lastErr
}

type attemptRef struct {
	a   *attempt
	who Attempt
}

// verifyFailed records a verification failure, penalises every source that
// contributed bytes, and resets the download so the next source starts
// from zero. It returns the error to report if no source succeeds.
func (s *Server) verifyFailed(f *flight, t Target, contributed []attemptRef, reason string) error {
	for _, c := range contributed {
		s.metrics.verifyFailures.WithLabelValues(c.who.Source).Inc()
		s.log.Warn("verification failed", "url", t.URL, "sha256", f.expect.Hex(), "source", c.who.Source, "peer", c.who.Peer, "reason", reason)
		if p, ok := c.a.src.(Penalizer); ok {
			p.Penalize(&c.a.req, c.who, reason)
		}
	}
	s.recordFailure(t.URL, f.expect.Hex(), sourcesOf(contributed), reason)
	if err := f.w.Reset(); err != nil {
		return fmt.Errorf("%s; resetting the download failed: %w", reason, err)
	}
	return &verifyError{reason: reason}
}

func sourcesOf(c []attemptRef) string {
	out := ""
	for i, r := range c {
		if i > 0 {
			out += ","
		}
		out += r.who.Source
		if r.who.Peer != "" {
			out += "(" + r.who.Peer + ")"
		}
	}
	return out
}

// verifyError is a verification failure: 502 to the client.
type verifyError struct{ reason string }

func (e *verifyError) Error() string { return e.reason }

var errTooLong = errors.New("source sent more bytes than the signed size")

// copyInto appends body to f's writer. The body starts at start; the writer
// holds off bytes already, so a body that restarted earlier is skipped
// forward. It stops with errTooLong past size (when size >= 0).
func (s *Server) copyInto(f *flight, body io.Reader, start, off, size int64) (int64, error) {
	if start > off {
		return 0, fmt.Errorf("source resumed at %d, past the %d bytes held", start, off)
	}
	if start < off {
		if _, err := io.CopyN(io.Discard, body, off-start); err != nil {
			return 0, fmt.Errorf("skipping to offset %d: %w", off, err)
		}
	}
	src := body
	if size >= 0 {
		src = io.LimitReader(body, size-off+1)
	}
	buf := s.bufPool.Get().(*[]byte)
	defer s.bufPool.Put(buf)
	var n int64
	for {
		m, rerr := src.Read(*buf)
		if m > 0 {
			if size >= 0 && off+n+int64(m) > size {
				m = int(size - off - n)
				if m > 0 {
					if _, err := f.w.Write((*buf)[:m]); err != nil {
						return n, err
					}
					n += int64(m)
				}
				return n, errTooLong
			}
			if _, err := f.w.Write((*buf)[:m]); err != nil {
				return n, fmt.Errorf("writing to the store: %w", err)
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// streamAtOnce is the signed size from which a download is streamed to its
// clients at once rather than held for Config.Hold. Measured with
// bench/single: holding every file cost +10 % on a cold apt run behind a
// 50 MB/s origin, streaming every file +5 %; below this size holding costs
// next to nothing and keeps the clean 502 on a verification failure.
const streamAtOnce = 4 << 20

// waitOrStream answers a client from flight f: from the verified blob when
// the download finishes within the hold time, else by streaming the
// growing file (aborting the response if verification then fails).
func (s *Server) waitOrStream(w http.ResponseWriter, r *http.Request, t Target, f *flight, hdr entryMeta) {
	d := s.hold
	if f.size.Load() >= streamAtOnce {
		// Holding a large file back would make the client hash it only
		// after the proxy has: stream it as it arrives (and abort the
		// response if it then fails verification).
		d = 0
	}
	hold := time.NewTimer(d)
	defer hold.Stop()
	// Streaming cannot honour Range or conditionals before the file is
	// whole; such requests wait for it.
	plain := r.Header.Get("Range") == "" && r.Method != http.MethodHead
	select {
	case <-f.done:
		s.finishFromFlight(w, r, t, f, hdr)
		return
	case <-f.verified:
		// Verified, being made durable: answer from the download now.
		if plain {
			break
		}
		select {
		case <-f.done:
			s.finishFromFlight(w, r, t, f, hdr)
		case <-r.Context().Done():
		}
		return
	case <-r.Context().Done():
		return
	case <-hold.C:
	}
	if !plain {
		select {
		case <-f.done:
			s.finishFromFlight(w, r, t, f, hdr)
		case <-r.Context().Done():
		}
		return
	}
	select {
	case <-f.ready:
	case <-r.Context().Done():
		return
	}
	select {
	case <-f.done:
		s.finishFromFlight(w, r, t, f, hdr)
		return
	default:
	}
	fo := f.w.NewFollower(r.Context())
	defer fo.Close()
	f.mu.Lock()
	meta := f.meta
	f.mu.Unlock()
	if meta.ContentType == "" {
		meta = hdr
	}
	setMeta(w.Header(), t, meta)
	size := f.size.Load()
	if size >= 0 {
		w.Header().Set("Content-Length", fmt.Sprint(size))
	}
	w.Header().Set("X-Pkgswarm-Source", f.sourceName()+"; streaming")
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, fo)
	s.metrics.servedBytes.WithLabelValues(f.sourceName()).Add(float64(n))
	if err != nil {
		// Never complete a response whose bytes did not verify
		// (DESIGN.md invariant 1): abort the connection.
		s.log.Warn("aborting streamed response", "url", t.URL, "sent", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	if size < 0 {
		// Without a Content-Length a clean end is the only signal; make
		// sure it means a verified end.
		<-f.done
		if f.err != nil {
			panic(http.ErrAbortHandler)
		}
	}
}

// finishFromFlight answers from a finished flight.
func (s *Server) finishFromFlight(w http.ResponseWriter, r *http.Request, t Target, f *flight, hdr entryMeta) {
	if f.err != nil {
		s.fail(w, r, t, f.err, f.status)
		return
	}
	f.mu.Lock()
	meta := f.meta
	f.mu.Unlock()
	if meta.ContentType == "" {
		meta = hdr
	}
	s.serveBlob(w, r, t, f.digest, meta, f.sourceName())
}

// flightsSnapshot lists downloads in progress for the status page.
func (s *Server) flightsSnapshot() []TransferStatus {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	out := make([]TransferStatus, 0, len(s.flights.m))
	for _, f := range s.flights.m {
		out = append(out, TransferStatus{URL: f.url, Source: f.sourceName(), Bytes: f.w.Size(), Size: f.size.Load(), Started: f.start})
	}
	return out
}

// TransferStatus is one download in progress.
type TransferStatus struct {
	URL     string    `json:"url"`
	Source  string    `json:"source"`
	Bytes   int64     `json:"bytes"`
	Size    int64     `json:"size"`
	Started time.Time `json:"started"`
}

// checkWriter runs an expectation's extra proof (e.g. an rpm signature) on
// the complete downloaded file before it is committed.
func (s *Server) checkWriter(w *store.Writer, exp *repoindex.Expectation) error {
	f, err := w.OpenRead()
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return exp.Check(f)
}

// stallReader cuts a source that sends nothing for d: it cancels the
// attempt's context and closes the body, which unblocks a pending Read.
type stallReader struct {
	r     io.ReadCloser
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newStallReader(r io.ReadCloser, d time.Duration, cancel context.CancelCauseFunc) *stallReader {
	sr := &stallReader{r: r, d: d}
	sr.t = time.AfterFunc(d, func() {
		sr.fired.Store(true)
		cancel(errStalled)
		r.Close()
	})
	return sr
}

var errStalled = errors.New("source stalled")

func (sr *stallReader) Read(p []byte) (int, error) {
	n, err := sr.r.Read(p)
	if n > 0 {
		sr.t.Reset(sr.d)
	}
	return n, err
}

func (sr *stallReader) stop()         { sr.t.Stop() }
func (sr *stallReader) stalled() bool { return sr.fired.Load() }
