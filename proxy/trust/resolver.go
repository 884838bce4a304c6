package trust

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
)

// ErrNotRepository means a path is no repository file of a known format.
var ErrNotRepository = errors.New("not a repository file")

// ErrRefused means a root (or a urpmi pubkey) failed verification, would move
// a repository back in time, or contradicts what the repository is bound to.
var ErrRefused = errors.New("refused")

// Config configures a Resolver. Zero values mean the documented defaults.
type Config struct {
	// Store holds blobs, URL entries, expectations and roots. Required.
	Store *store.Store
	// Fetch fetches roots and other small revalidated files from origins
	// (GetSmall). Required.
	Fetch *fetch.Fetcher
	// AptKeyring holds the keys that make an apt root trusted. Nil means none:
	// every apt repository is then served as a plain cache.
	AptKeyring *apt.Keyring
	// RPMKeys are the trusted rpm signing keys (--rpm-key): they verify rpm
	// header signatures of urpmi media and rpm-md repositories, and
	// repodata/repomd.xml.asc. Nil means none.
	RPMKeys *rpmsig.KeySet
	// RPMConfiguredKeysOnly, when true, never trusts a urpmi medium's own
	// pubkey; false pins it on first use, as urpmi does.
	RPMConfiguredKeysOnly bool
	// RevalidateEvery bounds origin checks of roots and other volatile files:
	// at most one per file per window. Zero means 27s (as apt-cacher-ng).
	RevalidateEvery time.Duration
	// MaxClockSkew is how far in the future a root's Date may be (a mirror's
	// clock ahead of ours). Zero means 10 minutes.
	MaxClockSkew time.Duration
	// ParseWait bounds how long a package request waits for an index parse
	// that will tell its digest. Zero means two minutes.
	ParseWait time.Duration
	// OnShareable, if set, is called once for each blob newly marked
	// shareable (the swarm seeds it). It must not block.
	OnShareable func(d store.Digest)
	// OnRefused, if set, is called once per refused root or pubkey and per
	// failed index parse (for the status page). It must not block.
	OnRefused func(url string, err error)
	// Logger receives one line per accepted or refused root. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Resolver is the trust package's one entry point: it says, for every
// request, what is expected of the file and how it may be obtained.
type Resolver struct {
	cfg   Config
	st    *store.Store
	fetch *fetch.Fetcher
	log   *slog.Logger
	now   func() time.Time

	reval   revalidator
	parses  parses
	known   known       // which prefixes a signed chain covers
	expects expectCache // expectations read, kept in memory

	learned    sync.Map // store.Digest → struct{}: Learn already ran this process
	indexTried sync.Map // root digest|component|arch → struct{}: fetchListingIndex ran

	ctx    context.Context // cancelled by Close; parents background parses
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Store == nil || cfg.Fetch == nil {
		return nil, errors.New("trust: Config.Store and Config.Fetch are required")
	}
	if cfg.RevalidateEvery <= 0 {
		cfg.RevalidateEvery = 27 * time.Second
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = 10 * time.Minute
	}
	if cfg.ParseWait <= 0 {
		cfg.ParseWait = 2 * time.Minute
	}
	r := &Resolver{cfg: cfg, st: cfg.Store, fetch: cfg.Fetch, log: cfg.Logger, now: cfg.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.expects.max = expectCacheSize
	r.reval.init()
	r.parses.init()
	if err := r.loadKnown(); err != nil {
		return nil, fmt.Errorf("trust: reading the repositories held: %w", err)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Close stops background index parses and waits for them.
func (r *Resolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// Plan is what the front does with one request: answer with a held blob, or
// run the pipeline.
type Plan struct {
	// Format is the chain that vouches for the file ("" for a plain cache of
	// a file no chain covers).
	Format Format
	// Held, when set, is the blob to answer with (roots and small files that
	// were revalidated here).
	Held *Held
	// Request, when Held is nil, is what the pipeline fetches.
	Request *fetch.Request
}

// Held is a blob the store holds, with the metadata to answer with.
type Held struct {
	Digest store.Digest
	Meta   fetch.Meta
	// Source labels where the bytes came from for this answer: "cache", or
	// "origin" when this request fetched them.
	Source string
}

// Resolve says what is expected of the file t names and how it may be
// obtained. It may contact the origin (roots, urpmi MD5SUM and pubkey) and
// wait for an index parse. Errors: ErrNotRepository (wrapped) for a path of
// no known format; a *fetch.VerifyError or ErrRefused for a refused root with
// no held copy; origin errors (fetch.IsNotFound, fetch.IsUnavailable).
func (r *Resolver) Resolve(ctx context.Context, t target.Target) (Plan, error) {
	c, ok := classify(t.Path)
	if !ok {
		return Plan{}, fmt.Errorf("%w: %s (pkgswarm fetches package, index and metadata files only)", ErrNotRepository, t.URL)
	}
	switch c.kind {
	case kindAptRoot:
		return r.aptRoot(ctx, t)
	case kindAptIndex:
		return r.aptIndex(ctx, t)
	case kindAptPackage:
		return r.aptPackage(ctx, t)
	case kindURPMIMD5SUM:
		return r.urpmiMD5SUM(ctx, t)
	case kindURPMIPubkey:
		return r.urpmiPubkey(ctx, t)
	case kindURPMIMediaInfo:
		return r.urpmiMediaInfo(ctx, t)
	case kindURPMIOther, kindRPMMDKey:
		return r.plainVolatile(c.format, t), nil
	case kindRPM:
		return r.rpm(ctx, t)
	case kindRPMMDRepomd:
		return r.rpmmdRepomd(ctx, t)
	case kindRPMMDRepodata:
		return r.rpmmdRepodata(ctx, t)
	}
	return Plan{}, fmt.Errorf("%w: %s", ErrNotRepository, t.URL)
}

// plainVolatile is a file no chain vouches for that may change in place:
// cached by URL, revalidated once per window, never asked of peers.
func (r *Resolver) plainVolatile(f Format, t target.Target) Plan {
	return Plan{Format: f, Request: &fetch.Request{URL: t.URL, Revalidate: r.cfg.RevalidateEvery}}
}

// plainImmutable is a file no chain vouches for whose name changes when its
// content does: cached by URL, never revalidated, never asked of peers.
func (r *Resolver) plainImmutable(f Format, t target.Target) Plan {
	return Plan{Format: f, Request: &fetch.Request{URL: t.URL}}
}

// signedRequest is the pipeline request for a file whose expectation a signed
// chain gives: peers may be asked, and once held the blob is shareable.
func (r *Resolver) signedRequest(u string, exp *store.Expect, learn func(store.Digest)) *fetch.Request {
	e := expectation(exp)
	return &fetch.Request{URL: u, Expect: &e, Peers: true, Learn: r.shareable(learn)}
}

// shareable wraps learn: the blob is marked shareable (once per process)
// before learn runs.
func (r *Resolver) shareable(learn func(store.Digest)) func(store.Digest) {
	return func(d store.Digest) {
		r.markShareable(d)
		if learn != nil {
			learn(d)
		}
	}
}

// markShareable marks the verified blob d shareable with peers, once per
// process.
func (r *Resolver) markShareable(d store.Digest) {
	if _, done := r.learned.Load(d); done {
		return
	}
	if !r.st.Shareable(d) {
		if err := r.st.MarkShareable(d); err != nil {
			r.log.Warn("marking a verified blob shareable", "sha256", d, "err", err)
			return
		}
		if r.cfg.OnShareable != nil {
			r.cfg.OnShareable(d)
		}
	}
	r.learned.Store(d, struct{}{})
}

// refused records and returns a refusal.
func (r *Resolver) refused(u string, err error) error {
	if r.cfg.OnRefused != nil {
		r.cfg.OnRefused(u, err)
	}
	return err
}
