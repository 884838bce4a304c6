package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Config configures a Fetcher. Zero values mean the documented defaults.
type Config struct {
	// Store holds blobs and URL entries. Required.
	Store *store.Store
	// Site are the tiers local to the site (the LAN), asked first, in order,
	// for Requests with Peers set.
	Site []Source
	// Wide are the tiers beyond the site (the swarm), asked next, in order,
	// for Requests with Peers set.
	Wide []Source
	// Origin fetches from origin URLs; it is asked once per candidate URL.
	// Nil means no origin is ever contacted (as Offline).
	Origin Source
	// Mirrors lists the URLs to try for a canonical URL, the URL itself
	// first. Nil means the URL alone.
	Mirrors func(url string) []string
	// Offline, when true, never contacts the origin.
	Offline bool
	// StallTimeout cuts a source that sends no byte for this long; the next
	// source resumes where it stopped. Zero means 10s (apt itself gives up on
	// a silent connection after 30s).
	StallTimeout time.Duration
	// MinRate and RateWindow cut a peer source that sends fewer than MinRate
	// bytes in a RateWindow (and penalise it). Zero means 64 KiB per 10s; a
	// negative MinRate turns the check off. Origins are only held to
	// StallTimeout: a slow mirror is still the mirror the user chose.
	MinRate    int64
	RateWindow time.Duration
	// DownloadTimeout bounds one download. Zero means one hour.
	DownloadTimeout time.Duration
	// OutageWait is how long a download that holds bytes keeps trying its
	// sources again once every one failed with an error that may pass (a
	// network error, a stall, a 5xx: an uplink cut, a mirror restarting),
	// backing off from 0.5 s to 15 s; the bytes held are kept and the next
	// try resumes after them. Zero means 30s; negative turns it off (the
	// download fails at once and its bytes are dropped).
	OutageWait time.Duration
	// MaxUnverified bounds a file without an expectation (or an expectation
	// without a size). Zero means 1 GiB.
	MaxUnverified int64
	// SideHash, if set, is asked for a second hash over each download
	// whose expectation has a SHA-256 and a size (the swarm's piece
	// hashes, so that seeding the blob does not read and hash it again);
	// it may return nil. Done is called after the download committed,
	// never for one that failed.
	SideHash func(size int64) SideHasher
	// Observer receives metrics and failure events. Nil means none.
	Observer Observer
	// Logger receives one warn line per failure. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// SideHasher computes a second hash of a download as it is written (see
// Config.SideHash).
type SideHasher interface {
	store.Tee
	// Done reports the committed blob's digest: the bytes the hasher saw
	// are exactly the blob's.
	Done(d store.Digest)
}

// Fetcher is the pipeline. Create it with New; Close ends its downloads.
type Fetcher struct {
	cfg Config
	st  *store.Store
	obs Observer
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex // protects flights
	flights map[string]*Flight

	afterLookup func() // tests: runs between Get's two looks

	bufPool sync.Pool

	ctx    context.Context // cancelled by Close; parents every download
	cancel context.CancelFunc
	wg     sync.WaitGroup // downloads in flight
}

// New returns a Fetcher.
func New(cfg Config) (*Fetcher, error) {
	if cfg.Store == nil {
		return nil, errors.New("fetch: Config.Store is required")
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 10 * time.Second
	}
	if cfg.MinRate == 0 {
		cfg.MinRate = 64 << 10
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = 10 * time.Second
	}
	if cfg.OutageWait == 0 {
		cfg.OutageWait = 30 * time.Second
	}
	if cfg.DownloadTimeout <= 0 {
		cfg.DownloadTimeout = time.Hour
	}
	if cfg.MaxUnverified <= 0 {
		cfg.MaxUnverified = 1 << 30
	}
	if cfg.Mirrors == nil {
		cfg.Mirrors = func(u string) []string { return []string{u} }
	}
	f := &Fetcher{cfg: cfg, st: cfg.Store, obs: cfg.Observer, log: cfg.Logger, now: cfg.Now, flights: map[string]*Flight{}}
	if f.obs == nil {
		f.obs = nopObserver{}
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.now == nil {
		f.now = time.Now
	}
	f.bufPool.New = func() any { b := make([]byte, 256<<10); return &b }
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f, nil
}

// Close cancels the downloads in flight and waits for them.
func (f *Fetcher) Close() {
	f.cancel()
	f.wg.Wait()
}

// Offline reports whether origins are never contacted.
func (f *Fetcher) Offline() bool { return f.cfg.Offline || f.cfg.Origin == nil }

// Result is Get's answer: a blob the store holds, or a download to follow.
type Result struct {
	// Flight is the download to follow; nil when the store holds the file.
	Flight *Flight
	// Digest and Meta name the held blob when Flight is nil.
	Digest store.Digest
	Meta   Meta
}

// KeyOf is the coalescing key of a request: the expected SHA-256
// ("sha256:<hex>"), else the expectation's Key, else "url:" and the URL.
func KeyOf(req *Request) string {
	switch {
	case req.Expect != nil && req.Expect.SHA256 != nil:
		return DigestKey(store.Digest(req.Expect.SHA256))
	case req.Expect != nil && req.Expect.Key != "":
		return req.Expect.Key
	}
	return "url:" + req.URL
}

// DigestKey is the key of a download of a known SHA-256.
func DigestKey(d store.Digest) string { return "sha256:" + d.String() }

// Lookup answers req from the store without starting a download: the blob of
// the expected SHA-256, or for a file without an expectation the blob held
// by URL while it is fresh (within Request.Revalidate). It calls req.Learn
// on a hit.
func (f *Fetcher) Lookup(req *Request) (Result, bool) {
	res, _, ok := f.lookup(req)
	return res, ok
}

// lookup is Lookup, also returning a held copy that must be revalidated.
func (f *Fetcher) lookup(req *Request) (Result, *store.URLEntry, bool) {
	res, cond, ok := f.find(req)
	if ok {
		learn(req, res)
	}
	return res, cond, ok
}

// learn tells req what it taught once held.
func learn(req *Request, res Result) {
	if req.Learn != nil {
		req.Learn(res.Digest)
	}
}

// find is lookup without telling req.Learn: join calls it under f.mu.
func (f *Fetcher) find(req *Request) (Result, *store.URLEntry, bool) {
	switch {
	case req.Expect != nil && req.Expect.SHA256 != nil:
		d := store.Digest(req.Expect.SHA256)
		if f.st.HasBlob(d) {
			return Result{Digest: d}, nil, true
		}
	case req.Expect == nil && !req.NoRecord:
		e, err := f.st.GetURL(req.URL)
		if err == nil && f.st.HasBlob(e.Digest) {
			if req.Revalidate <= 0 || f.now().Sub(e.Fetched) < req.Revalidate || f.Offline() {
				return Result{Digest: e.Digest, Meta: metaOf(e)}, nil, true
			}
			return Result{}, &e, false
		}
	}
	return Result{}, nil, false
}

// Get answers req from the store when it holds the file (see Lookup), else
// returns the one download of it, starting it if none runs. The download
// outlives ctx.
func (f *Fetcher) Get(ctx context.Context, req *Request) (Result, error) {
	res, cond, ok := f.lookup(req)
	if ok {
		return res, nil
	}
	if f.afterLookup != nil {
		f.afterLookup()
	}
	return f.join(req, cond)
}

// Flight returns the download running under key, or nil.
func (f *Fetcher) Flight(key string) *Flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flights[key]
}

// Transfers lists the downloads in progress.
func (f *Fetcher) Transfers() []Transfer {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Transfer, 0, len(f.flights))
	for _, fl := range f.flights {
		out = append(out, Transfer{URL: fl.req.URL, Source: fl.Source(), Bytes: fl.Written(), Size: fl.Size(), Started: fl.start})
	}
	return out
}

func metaOf(e store.URLEntry) Meta {
	return Meta{ContentType: e.ContentType, LastModified: e.LastModified, ETag: e.ETag}
}

// join returns the running flight for req's key, or the file when the
// store holds it now, or starts a flight. A flight commits before it leaves
// f.flights (under f.mu), so a file that was not in the store when Get
// looked, and whose flight is gone, was committed meanwhile; starting
// another would fetch it a second time.
func (f *Fetcher) join(req *Request, cond *store.URLEntry) (Result, error) {
	key := KeyOf(req)
	f.mu.Lock()
	if fl, ok := f.flights[key]; ok {
		f.mu.Unlock()
		return Result{Flight: fl}, nil
	}
	if res, _, held := f.find(req); held {
		f.mu.Unlock()
		learn(req, res)
		return res, nil
	}
	w, err := f.st.NewWriter()
	if err != nil {
		f.mu.Unlock()
		return Result{}, fmt.Errorf("cannot start the download of %s: %w", req.URL, storeErr(err))
	}
	fl := &Flight{key: key, req: req, start: f.now(), w: w,
		ready: make(chan struct{}), verified: make(chan struct{}), done: make(chan struct{})}
	fl.size.Store(-1)
	if req.Expect != nil && req.Expect.Size >= 0 {
		fl.size.Store(req.Expect.Size)
		if f.cfg.SideHash != nil && req.Expect.SHA256 != nil {
			if fl.side = f.cfg.SideHash(req.Expect.Size); fl.side != nil {
				w.SetTee(fl.side)
			}
		}
	}
	f.flights[key] = fl
	f.mu.Unlock()

	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DownloadTimeout)
		defer cancel()
		var err error
		if req.Expect != nil {
			err = f.runVerified(ctx, fl)
		} else {
			err = f.runByURL(ctx, fl, cond)
		}
		if err != nil {
			fl.w.Abort(err)
		} else if req.Learn != nil {
			req.Learn(fl.digest)
		}
		f.mu.Lock()
		delete(f.flights, key)
		f.mu.Unlock()
		fl.err = err
		// done closes before ready when no source ever answered, so a
		// waiter woken by ready always sees done and never follows a writer
		// that was aborted without a byte.
		close(fl.done)
		fl.readyOnce.Do(func() { close(fl.ready) })
	}()
	return Result{Flight: fl}, nil
}

// role is where an attempt's source sits in the tier order.
type role int

const (
	roleSite role = iota
	roleWide
	roleOrigin
)

type attempt struct {
	src  Source
	role role
	a    Attempt
	// alone: asked again from the first byte after bytes it sent
	// following another source's failed verification together.
	alone bool
}

// candidates lists the origin URLs to try for req: its URL and mirrors, then
// each alternate and its mirrors.
func (f *Fetcher) candidates(req *Request) []string {
	out := f.cfg.Mirrors(req.URL)
	for _, alt := range req.Alternates {
		out = append(out, f.cfg.Mirrors(alt)...)
	}
	return out
}

func (f *Fetcher) attempts(req *Request) []attempt {
	var out []attempt
	if req.Peers {
		for _, s := range f.cfg.Site {
			out = append(out, attempt{src: s, role: roleSite, a: Attempt{Request: req, URL: req.URL}})
		}
		for _, s := range f.cfg.Wide {
			out = append(out, attempt{src: s, role: roleWide, a: Attempt{Request: req, URL: req.URL}})
		}
	}
	if !f.Offline() {
		for _, u := range f.candidates(req) {
			out = append(out, attempt{src: f.cfg.Origin, role: roleOrigin, a: Attempt{Request: req, URL: u}})
		}
	}
	return out
}

// contribution is one attempt whose bytes went into the download.
type contribution struct {
	at   *attempt
	peer string
}

// runVerified fills fl from the tiers in order, resuming at the current
// offset when a source fails mid-stream, and commits only bytes that pass
// the expectation (size, SHA-256, Check).
func (f *Fetcher) runVerified(ctx context.Context, fl *Flight) error {
	exp := fl.req.Expect
	limit := exp.Size
	if limit < 0 {
		limit = f.maxSize(fl.req)
	}
	var contributed []contribution
	var lastErr, verifyErr error
	var outage outageRetry
	for {
		// One round of the tiers; a round that ends without the file may be
		// run again (outageRetry).
		attempts := f.attempts(fl.req)
		askedAgain := false
		for i := 0; i < len(attempts); i++ {
			at := &attempts[i]
			if at.role != roleSite {
				fl.leading.Store(true)
			}
			fl.stage.Store(int32(at.role))
			at.a.Offset = fl.w.Size()
			resumed := at.a.Offset > 0
			body, cut, err := f.open(ctx, at)
			if err != nil {
				lastErr = err
				continue
			}
			contributed = append(contributed, contribution{at: at, peer: body.Peer})
			var meta *Meta
			if at.role == roleOrigin {
				meta = &body.Meta
				if exp.Size < 0 && body.Size >= 0 && body.Start == 0 {
					fl.size.Store(body.Size)
				}
			}
			fl.answered(at.src.Name(), at.role != roleOrigin, meta)
			n, err := f.copyInto(fl, body, at.a.Offset, limit)
			err = cut.finish(body, err)
			f.obs.Fetched(at.src.Name(), n)
			if err != nil && errors.Is(err, ErrNoSpace) {
				return err
			}
			if err != nil && (errors.Is(err, ErrStalled) || errors.Is(err, ErrTooSlow)) {
				f.penalize(at, body.Peer, err)
			}
			tooLong := errors.Is(err, ErrTooLarge)
			if err != nil && !tooLong && exp.Size >= 0 && fl.w.Size() >= exp.Size {
				// Every byte arrived, then the source failed (the swarm reader's
				// own whole-file check): nothing to resume; the digest decides.
				f.log.Warn("source failed after its last byte", "source", at.src.Name(), "peer", body.Peer, "url", fl.req.URL, "err", err)
				err = nil
			}
			if err != nil && !tooLong {
				f.obs.SourceFailed(at.src.Name(), at.a.URL, err)
				lastErr = err
				if at.role == roleSite && errors.Is(err, ErrStalled) && !askedAgain {
					// The LAN peer read from may be stalled by its own source (the
					// office's uplink cut): it resumes by itself, and going to the
					// origin meanwhile would fetch the rest a second time. Ask the
					// LAN once more (a fresh look at the peers) first.
					askedAgain = true
					f.log.Warn("LAN source stalled mid-file; asking the LAN peers again before the next tier", "source", at.src.Name(), "peer", body.Peer, "url", fl.req.URL, "offset", fl.w.Size(), "err", err)
					attempts[i].a = Attempt{Request: at.a.Request, URL: at.a.URL}
					i--
					continue
				}
				f.log.Warn("source stopped mid-file; the next one resumes", "source", at.src.Name(), "peer", body.Peer, "url", fl.req.URL, "offset", fl.w.Size(), "err", err)
				continue
			}
			if tooLong && exp.Size < 0 {
				// No size was promised: this source sent more than any file of
				// this kind may have. Not a lie about a signed size; start over.
				lastErr = fmt.Errorf("%s sent more than %d bytes of %s: %w", at.src.Name(), limit, fl.req.URL, ErrTooLarge)
				contributed = nil
				if rerr := fl.w.Reset(); rerr != nil {
					return fmt.Errorf("restarting the download of %s: %w", fl.req.URL, rerr)
				}
				continue
			}
			got := fl.w.Size()
			if !tooLong && exp.Size >= 0 && got < exp.Size {
				lastErr = fmt.Errorf("%s sent %d of the %d bytes of %s", at.src.Name(), got, exp.Size, fl.req.URL)
				continue
			}
			var cause error
			sum := fl.w.Sum()
			switch {
			case tooLong:
				cause = fmt.Errorf("%s: %s sent more than the %d bytes %s lists: %w", fl.req.URL, at.src.Name(), exp.Size, exp.Root, ErrDigestMismatch)
			case exp.SHA256 != nil && sum != store.Digest(exp.SHA256):
				cause = fmt.Errorf("sha256 mismatch for %s: got %s (%d bytes), %s lists %s (%d bytes): %w",
					fl.req.URL, sum, got, exp.Root, exp.Hex(), exp.Size, ErrDigestMismatch)
			case exp.Check != nil:
				cause = f.check(fl, exp)
			}
			if cause != nil {
				verifyErr = f.verifyFailed(fl, contributed, cause)
				contributed = nil
				if rerr := fl.w.Reset(); rerr != nil {
					return fmt.Errorf("%w; restarting the download failed: %v", verifyErr, rerr)
				}
				if resumed && !at.alone {
					// This source resumed after another: the bytes failed
					// together, and which part was wrong is not known. Ask it
					// once more alone, from the first byte, before the next
					// source: else a source that stops after sending bad bytes
					// (a hostile peer) fails a file that the next tier has
					// whole. The sources before it were penalised above.
					f.log.Warn("asking the source that resumed after a failed one again, from the first byte", "source", at.src.Name(), "url", fl.req.URL)
					at.alone = true
					at.a = Attempt{Request: at.a.Request, URL: at.a.URL}
					i--
				}
				continue
			}
			// Waiting clients may be answered from the download while Commit
			// makes it durable (followers end once the digest matched).
			close(fl.verified)
			if err := fl.w.Commit(sum); err != nil {
				return fmt.Errorf("storing %s (sha256 %s): %w", fl.req.URL, sum, storeErr(err))
			}
			fl.digest = sum
			if fl.side != nil {
				fl.side.Done(sum)
			}
			return nil
		}
		if verifyErr != nil || !outage.again(ctx, f, fl, lastErr) {
			break
		}
	}
	if verifyErr != nil {
		// The file exists but no source sent it intact: that, not a later
		// source's "not found", is what the client must hear.
		return verifyErr
	}
	if lastErr == nil {
		if f.Offline() && !fl.req.Peers {
			lastErr = fmt.Errorf("%s: %w", fl.req.URL, ErrOffline)
		} else {
			lastErr = fmt.Errorf("no source has %s: %w", fl.req.URL, ErrNotFound)
		}
	}
	return lastErr
}

// outageRetry decides whether a download whose sources all failed tries
// them again (Config.OutageWait).
type outageRetry struct {
	deadline time.Time
	wait     time.Duration
}

// again waits before the next round and reports true, or reports false when
// the download should fail: it holds no byte, the last error will not pass
// by itself, or the outage lasted past OutageWait.
func (o *outageRetry) again(ctx context.Context, f *Fetcher, fl *Flight, lastErr error) bool {
	if f.cfg.OutageWait < 0 || fl.w.Size() == 0 || !mayPass(lastErr) || ctx.Err() != nil {
		return false
	}
	now := f.now()
	if o.deadline.IsZero() {
		o.deadline, o.wait = now.Add(f.cfg.OutageWait), 500*time.Millisecond
	}
	if now.Add(o.wait).After(o.deadline) {
		return false
	}
	f.log.Warn("every source failed; keeping the bytes held and trying again", "url", fl.req.URL,
		"held", fl.w.Size(), "in", o.wait, "gives_up_in", o.deadline.Sub(now).Round(time.Second), "err", lastErr)
	t := time.NewTimer(o.wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	o.wait = min(2*o.wait, 15*time.Second)
	return true
}

// mayPass reports whether err, the last failure of a round of sources, may
// pass by itself (OutageWait): not a file missing, refused or failing
// verification, a full disk, or a 4xx.
func mayPass(err error) bool {
	var se *StatusError
	switch {
	case err == nil, IsNotFound(err), IsForbidden(err), IsVerify(err), errors.Is(err, ErrOffline),
		errors.Is(err, ErrNoSpace), errors.Is(err, ErrTooLarge), errors.Is(err, ErrNotModified), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &se):
		return se.Code >= 500
	}
	return true
}

// open starts one attempt and arms the stall (and, for peers, rate) guard.
func (f *Fetcher) open(ctx context.Context, at *attempt) (*Body, *guard, error) {
	actx, cancel := context.WithCancelCause(ctx)
	body, err := at.src.Fetch(actx, &at.a)
	if err != nil {
		cancel(nil)
		if !IsNotFound(err) && !errors.Is(err, ErrNotModified) {
			f.obs.SourceFailed(at.src.Name(), at.a.URL, err)
			f.log.Warn("source failed", "source", at.src.Name(), "url", at.a.URL, "err", err)
		}
		return nil, nil, err
	}
	minRate := f.cfg.MinRate
	if at.role == roleOrigin {
		minRate = -1
	}
	g := newGuard(body.ReadCloser, f.cfg.StallTimeout, minRate, f.cfg.RateWindow, cancel)
	body.ReadCloser = g
	return body, g, nil
}

func (f *Fetcher) maxSize(req *Request) int64 {
	if req.MaxSize > 0 {
		return req.MaxSize
	}
	return f.cfg.MaxUnverified
}

func (f *Fetcher) penalize(at *attempt, peer string, reason error) {
	if p, ok := at.src.(Penalizer); ok && at.role != roleOrigin {
		p.Penalize(&at.a, peer, reason)
	}
}

// verifyFailed reports a verification failure and penalises every source
// that contributed bytes. It returns the error to give if no source succeeds.
func (f *Fetcher) verifyFailed(fl *Flight, contributed []contribution, cause error) *VerifyError {
	ve := &VerifyError{URL: fl.req.URL, SHA256: fl.req.Expect.Hex(), Err: cause}
	for _, c := range contributed {
		ve.Sources = append(ve.Sources, Contrib{Source: c.at.src.Name(), Peer: c.peer})
		f.penalize(c.at, c.peer, cause)
	}
	f.log.Warn("verification failed; trying the next source", "url", fl.req.URL, "sha256", ve.SHA256, "sources", contribString(ve.Sources), "err", cause)
	f.obs.VerifyFailed(ve)
	return ve
}

// check runs the expectation's extra proof (e.g. an rpm signature) on the
// complete download.
func (f *Fetcher) check(fl *Flight, exp *repoindex.Expectation) error {
	file, err := fl.w.OpenRead()
	if err != nil {
		return fmt.Errorf("reopening the download of %s to check it: %w", fl.req.URL, err)
	}
	defer file.Close()
	if err := exp.Check(file); err != nil {
		return fmt.Errorf("%s: %w", fl.req.URL, err)
	}
	return nil
}

// runByURL fetches a file without an expectation from the origin candidates
// (conditionally when a copy is held), commits it by its own digest and
// records it by URL. A held copy is confirmed by 304, and kept when every
// origin is unreachable.
func (f *Fetcher) runByURL(ctx context.Context, fl *Flight, held *store.URLEntry) error {
	req := fl.req
	limit := f.maxSize(req)
	var lastErr error
	if f.Offline() {
		lastErr = fmt.Errorf("%s: %w", req.URL, ErrOffline)
	}
	notFound := 0
	cands := f.attempts(&Request{URL: req.URL, Alternates: req.Alternates}) // origin attempts only
	for i := range cands {
		at := &cands[i]
		at.a.Request, at.a.Conditional = req, held
		if fl.w.Size() > 0 {
			// Bytes of one origin are never spliced onto another's: nothing
			// verifies the result.
			if err := fl.w.Reset(); err != nil {
				return fmt.Errorf("restarting the download of %s: %w", req.URL, err)
			}
		}
		body, cut, err := f.open(ctx, at)
		switch {
		case errors.Is(err, ErrNotModified) && held != nil:
			return f.confirmHeld(fl, held)
		case IsNotFound(err):
			notFound++
			lastErr = err
			continue
		case err != nil:
			lastErr = err
			continue
		}
		if body.Size >= 0 {
			fl.size.Store(body.Size)
		}
		fl.answered(at.src.Name(), false, &body.Meta)
		n, err := f.copyInto(fl, body, 0, limit)
		err = cut.finish(body, err)
		f.obs.Fetched(at.src.Name(), n)
		if err == nil && body.Size >= 0 && n != body.Size {
			err = fmt.Errorf("got %d of %d bytes", n, body.Size)
		}
		if err != nil {
			if errors.Is(err, ErrNoSpace) {
				return err
			}
			lastErr = fmt.Errorf("origin %s: %w", at.a.URL, err)
			f.obs.SourceFailed(at.src.Name(), at.a.URL, err)
			continue
		}
		d := fl.w.Sum()
		close(fl.verified)
		if err := fl.w.Commit(d); err != nil {
			return fmt.Errorf("storing %s: %w", req.URL, storeErr(err))
		}
		fl.digest = d
		if req.NoRecord {
			return nil
		}
		if err := f.st.PutURL(req.URL, store.URLEntry{Digest: d, Size: n, ContentType: body.Meta.ContentType,
			LastModified: body.Meta.LastModified, ETag: body.Meta.ETag, Fetched: f.now()}); err != nil {
			return fmt.Errorf("recording %s: %w", req.URL, err)
		}
		return nil
	}
	if held != nil && notFound < len(cands) {
		f.log.Warn("origins unreachable, serving the held copy", "url", req.URL, "err", lastErr)
		fl.digest = held.Digest
		fl.answered("cache", false, &Meta{held.ContentType, held.LastModified, held.ETag})
		return nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no origin has %s: %w", req.URL, ErrNotFound)
	}
	return lastErr
}

// confirmHeld records that the origin confirmed the held copy (304).
func (f *Fetcher) confirmHeld(fl *Flight, held *store.URLEntry) error {
	e := *held
	e.Fetched = f.now()
	if err := f.st.PutURL(fl.req.URL, e); err != nil {
		return fmt.Errorf("recording the revalidation of %s: %w", fl.req.URL, err)
	}
	fl.digest = e.Digest
	fl.answered("cache", false, &Meta{e.ContentType, e.LastModified, e.ETag})
	return nil
}

// copyInto appends body to fl's writer. The body starts at body.Start; the
// writer holds off bytes already, so a body that restarted earlier is skipped
// forward. It stops with ErrTooLarge past limit.
func (f *Fetcher) copyInto(fl *Flight, body *Body, off, limit int64) (int64, error) {
	if body.Start > off {
		return 0, fmt.Errorf("source resumed at %d, past the %d bytes held", body.Start, off)
	}
	if body.Start < off {
		if err := discard(body, off-body.Start); err != nil {
			return 0, fmt.Errorf("skipping to offset %d: %w", off, err)
		}
	}
	buf := f.bufPool.Get().(*[]byte)
	defer f.bufPool.Put(buf)
	var n int64
	for {
		m, rerr := body.Read(*buf)
		if m > 0 {
			over := off + n + int64(m) - limit
			if over > 0 {
				m -= int(over)
			}
			if m > 0 {
				if _, err := fl.w.Write((*buf)[:m]); err != nil {
					return n, fmt.Errorf("writing to the store: %w", storeErr(err))
				}
				n += int64(m)
			}
			if over > 0 {
				return n, ErrTooLarge
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil
			}
			return n, rerr
		}
	}
}

// storeErr marks a full disk, so that the client hears 507 with the reason
// rather than a gateway error.
func storeErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
