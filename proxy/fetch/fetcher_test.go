package fetch_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/fetchtest"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// The in-memory source passes the conformance suite in every role.
func TestStaticConformanceAsSite(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		cfg.Site = []fetch.Source{&fetchtest.Static{Label: "lan", Content: content, Fault: fault}}
		cfg.Origin = fallback
	})
}

func TestStaticConformanceAsWide(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		cfg.Wide = []fetch.Source{&fetchtest.Static{Label: "swarm", Content: content, Fault: fault}}
		cfg.Origin = fallback
	})
}

// As an origin, the tested source is the first candidate and the fallback
// the mirror after it.
func TestStaticConformanceAsOrigin(t *testing.T) {
	t.Parallel()
	fetchtest.Run(t, func(t *testing.T, content []byte, fault fetchtest.Fault, fallback *fetchtest.Static, cfg *fetch.Config) {
		tested := &fetchtest.Static{Label: "origin", Content: content, Fault: fault}
		cfg.Origin = byURL{"http://origin.test/pool/f.deb": tested, "http://mirror.test/pool/f.deb": fallback}
		cfg.Mirrors = func(u string) []string { return []string{u, strings.Replace(u, "origin.test", "mirror.test", 1)} }
	})
}

// byURL is an origin that dispatches attempts by URL.
type byURL map[string]fetch.Source

func (b byURL) Name() string { return "origin" }
func (b byURL) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	s, ok := b[a.URL]
	if !ok {
		return nil, fmt.Errorf("%s: %w", a.URL, fetch.ErrNotFound)
	}
	return s.Fetch(ctx, a)
}

type pipeline struct {
	f   *fetch.Fetcher
	st  *store.Store
	obs *fetchtest.Recorder
}

func newPipeline(t *testing.T, cfg fetch.Config) *pipeline {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), InMemoryIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	obs := &fetchtest.Recorder{}
	cfg.Store, cfg.Observer = st, obs
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = fetchtest.StallTimeout
	}
	f, err := fetch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return &pipeline{f: f, st: st, obs: obs}
}

func expectOf(content []byte) *repoindex.Expectation {
	sum := sha256.Sum256(content)
	return &repoindex.Expectation{SHA256: sum[:], Size: int64(len(content)), Key: repoindex.DigestKey(sum[:]), Root: "test root"}
}

// run fetches req and waits for the download.
func (p *pipeline) run(t *testing.T, req *fetch.Request) (fetch.Result, error) {
	t.Helper()
	res, err := p.f.Get(context.Background(), req)
	if err != nil || res.Flight == nil {
		return res, err
	}
	return res, res.Flight.Err()
}

// Peer tiers are asked in order, site before wide before origin, and only
// for requests that allow peers.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("precedence ", 1000))
	for _, tc := range []struct {
		name       string
		peers      bool
		site, wide fetchtest.Fault
		want       string // the tier that served it
	}{
		{name: "site first", peers: true, site: fetchtest.Good, wide: fetchtest.Good, want: "lan"},
		{name: "wide when site has nothing", peers: true, site: fetchtest.Nothing, wide: fetchtest.Good, want: "swarm"},
		{name: "origin when no peer has it", peers: true, site: fetchtest.Nothing, wide: fetchtest.Nothing, want: "origin"},
		{name: "no peer asked without a signed chain", peers: false, site: fetchtest.Good, wide: fetchtest.Good, want: "origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			site := &fetchtest.Static{Label: "lan", Content: content, Fault: tc.site}
			wide := &fetchtest.Static{Label: "swarm", Content: content, Fault: tc.wide}
			origin := &fetchtest.Static{Label: "origin", Content: content}
			p := newPipeline(t, fetch.Config{Site: []fetch.Source{site}, Wide: []fetch.Source{wide}, Origin: origin})
			res, err := p.run(t, &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content), Peers: tc.peers})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Flight.Source(); got != tc.want {
				t.Fatalf("served by %s, want %s", got, tc.want)
			}
			if !tc.peers && (len(site.Offsets()) > 0 || len(wide.Offsets()) > 0) {
				t.Fatal("a peer tier was asked for a file no signed chain vouches for")
			}
		})
	}
}

// A file that every source sends wrong fails with a VerifyError that keeps
// its cause, and nothing is committed.
func TestMismatchEverywhere(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("x", 5000))
	p := newPipeline(t, fetch.Config{
		Site:   []fetch.Source{&fetchtest.Static{Label: "lan", Content: content, Fault: fetchtest.Lie}},
		Origin: &fetchtest.Static{Label: "origin", Content: content, Fault: fetchtest.Lie},
	})
	_, err := p.run(t, &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content), Peers: true})
	if !fetch.IsVerify(err) || !errors.Is(err, fetch.ErrDigestMismatch) {
		t.Fatalf("err = %v, want a VerifyError wrapping ErrDigestMismatch", err)
	}
	if n, _ := p.st.Usage(); n != 0 {
		t.Fatalf("the store holds %d blobs after every source lied", n)
	}
	if got := len(p.obs.Failures()); got != 2 {
		t.Fatalf("%d verification failures reported, want 2 (one per lying source)", got)
	}
}

// A Check failure keeps its cause through the pipeline (errors.Is works
// above it).
func TestCheckErrorKeepsItsCause(t *testing.T) {
	t.Parallel()
	content := []byte("an rpm")
	errUnsigned := errors.New("rpm is not signed")
	exp := expectOf(content)
	exp.Check = func(f *os.File) error { return fmt.Errorf("rpm x: %w", errUnsigned) }
	p := newPipeline(t, fetch.Config{Origin: &fetchtest.Static{Label: "origin", Content: content}})
	_, err := p.run(t, &fetch.Request{URL: "http://o.test/x.rpm", Expect: exp})
	if !errors.Is(err, errUnsigned) || !fetch.IsVerify(err) {
		t.Fatalf("err = %v, want a VerifyError wrapping the Check's cause", err)
	}
}

// A peer that sends too slowly is cut and penalised; the origin resumes.
func TestSlowPeerIsCutAndPenalized(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("slow ", 20000))
	slow := &slowSource{content: content}
	origin := &fetchtest.Static{Label: "origin", Content: content}
	p := newPipeline(t, fetch.Config{Site: []fetch.Source{slow}, Origin: origin, MinRate: 64 << 10, RateWindow: 200 * time.Millisecond, StallTimeout: time.Minute})
	if _, err := p.run(t, &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content), Peers: true}); err != nil {
		t.Fatal(err)
	}
	if errs := slow.penalties(); len(errs) != 1 || !errors.Is(errs[0], fetch.ErrTooSlow) {
		t.Fatalf("penalties %v, want one wrapping ErrTooSlow", errs)
	}
	if offs := origin.Offsets(); len(offs) != 1 || offs[0] == 0 {
		t.Fatalf("origin asked from %v, want one resume past 0", offs)
	}
}

// slowSource trickles a few bytes at a time, forever, and records penalties.
type slowSource struct {
	content []byte
	mu      sync.Mutex
	pen     []error
}

func (s *slowSource) Name() string { return "lan" }
func (s *slowSource) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	pr, pw := io.Pipe()
	go func() {
		for off := a.Offset; off < int64(len(s.content)); off += 10 {
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := pw.Write(s.content[off:min(off+10, int64(len(s.content)))]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	return &fetch.Body{ReadCloser: pr, Start: a.Offset, Size: int64(len(s.content)), Peer: "slow@http://10.0.0.9"}, nil
}
func (s *slowSource) Penalize(a *fetch.Attempt, peer string, reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pen = append(s.pen, reason)
}
func (s *slowSource) penalties() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.pen...)
}

// A file without an expectation comes from the origin only, is recorded by
// URL, served from the store within its revalidation window, revalidated
// with a conditional request after it, and kept when every origin is down.
func TestByURL(t *testing.T) {
	t.Parallel()
	content := []byte("volatile metadata")
	origin := &condSource{content: content}
	site := &fetchtest.Static{Label: "lan", Content: content}
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := newPipeline(t, fetch.Config{Site: []fetch.Source{site}, Origin: origin, Now: clock})
	req := &fetch.Request{URL: "http://o.test/media.cfg", Revalidate: time.Minute, Peers: true}
	res, err := p.run(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(site.Offsets()) != 0 {
		t.Fatal("a peer was asked for a file without an expectation")
	}
	if res, err = p.run(t, req); err != nil || res.Flight != nil {
		t.Fatalf("within the window: %+v, %v; want a hit", res, err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if res, err = p.run(t, req); err != nil || res.Flight == nil || res.Flight.Source() != "cache" {
		t.Fatalf("after the window: %+v, %v; want a revalidation confirmed by 304", res, err)
	}
	if origin.conditional() != 1 {
		t.Fatalf("%d conditional requests, want 1", origin.conditional())
	}
	origin.setDown(true)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if res, err = p.run(t, req); err != nil || res.Flight == nil || res.Flight.Digest() != store.DigestOf(content) {
		t.Fatalf("origin down: %+v, %v; want the held copy", res, err)
	}
}

// condSource is an origin answering conditional requests with 304.
type condSource struct {
	content []byte
	mu      sync.Mutex
	conds   int
	down    bool
}

func (c *condSource) Name() string { return "origin" }
func (c *condSource) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, &fetch.StatusError{URL: a.URL, Status: "503 Service Unavailable", Code: 503}
	}
	if a.Conditional != nil {
		c.conds++
		return nil, fmt.Errorf("%s: %w", a.URL, fetch.ErrNotModified)
	}
	return &fetch.Body{ReadCloser: io.NopCloser(strings.NewReader(string(c.content))), Size: int64(len(c.content)), Meta: fetch.Meta{ETag: `"x"`}}, nil
}
func (c *condSource) conditional() int { c.mu.Lock(); defer c.mu.Unlock(); return c.conds }
func (c *condSource) setDown(d bool)   { c.mu.Lock(); c.down = d; c.mu.Unlock() }

// A file without an expectation larger than its bound is refused and not
// kept.
func TestByURLSizeBound(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("big", 10000))
	p := newPipeline(t, fetch.Config{Origin: &fetchtest.Static{Label: "origin", Content: content}})
	_, err := p.run(t, &fetch.Request{URL: "http://o.test/x/by-hash/SHA256/ab", MaxSize: 1000})
	if !errors.Is(err, fetch.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if n, _ := p.st.Usage(); n != 0 {
		t.Fatalf("the store holds %d blobs", n)
	}
}

// NoRecord streams a file without recording it: the next request fetches
// it again.
func TestNoRecord(t *testing.T) {
	t.Parallel()
	content := []byte("not listed yet")
	origin := &fetchtest.Static{Label: "origin", Content: content}
	p := newPipeline(t, fetch.Config{Origin: origin})
	req := &fetch.Request{URL: "http://o.test/pool/x.deb", NoRecord: true}
	for range 2 {
		if _, err := p.run(t, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(origin.Offsets()); n != 2 {
		t.Fatalf("origin asked %d times, want 2", n)
	}
	if _, err := p.st.GetURL(req.URL); !store.IsNotFound(err) {
		t.Fatalf("recorded by URL: %v", err)
	}
}

// Concurrent requests for one file start one download.
func TestOneDownloadPerKey(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("herd ", 10000))
	origin := &fetchtest.Static{Label: "origin", Content: content, Fault: fetchtest.Good}
	gate := &gatedSource{Source: origin, open: make(chan struct{})}
	p := newPipeline(t, fetch.Config{Origin: gate})
	req := &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content)}
	var flights []*fetch.Flight
	for range 10 {
		res, err := p.f.Get(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		flights = append(flights, res.Flight)
	}
	close(gate.open)
	for _, fl := range flights {
		if fl != flights[0] || fl.Err() != nil {
			t.Fatal("requests for one file did not share one download")
		}
	}
	if n := len(origin.Offsets()); n != 1 {
		t.Fatalf("origin asked %d times, want 1", n)
	}
}

type gatedSource struct {
	fetch.Source
	open chan struct{}
}

func (g *gatedSource) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	<-g.open
	return g.Source.Fetch(ctx, a)
}

// A reader of a download never gets the last byte of a file that fails
// verification.
func TestReaderNeverCompletesABadFile(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("tampered ", 1000))
	bad := &fetchtest.Static{Label: "origin", Content: content, Fault: fetchtest.Lie}
	gate := &gatedSource{Source: bad, open: make(chan struct{})}
	p := newPipeline(t, fetch.Config{Origin: gate})
	res, err := p.f.Get(context.Background(), &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content)})
	if err != nil {
		t.Fatal(err)
	}
	rd := res.Flight.NewReader(context.Background())
	defer rd.Close()
	close(gate.open)
	got, err := io.ReadAll(rd)
	if err == nil {
		t.Fatal("the reader ended cleanly on a file that failed verification")
	}
	if len(got) >= len(content) {
		t.Fatalf("the reader got all %d bytes of a file that failed verification", len(got))
	}
}

// A file without an expectation whose origin stalls is cut after the stall
// timeout; nothing is kept.
func TestByURLStall(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("stall", 10000))
	p := newPipeline(t, fetch.Config{Origin: &fetchtest.Static{Label: "origin", Content: content, Fault: fetchtest.Stall}})
	_, err := p.run(t, &fetch.Request{URL: "http://o.test/media.cfg"})
	if !errors.Is(err, fetch.ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if n, _ := p.st.Usage(); n != 0 {
		t.Fatalf("the store holds %d blobs", n)
	}
}

// sideRec is a SideHasher that records what it saw and its Done calls.
type sideRec struct {
	mu    sync.Mutex
	b     []byte
	dones []store.Digest
}

func (s *sideRec) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}
func (s *sideRec) Reset() { s.mu.Lock(); s.b = s.b[:0]; s.mu.Unlock() }
func (s *sideRec) Done(d store.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dones = append(s.dones, d)
}

// The side hash of a download sees exactly the committed blob's bytes, even
// after a lying source's bytes were thrown away, and hears Done only for a
// download that committed.
func TestSideHashSeesTheCommittedBytes(t *testing.T) {
	t.Parallel()
	content := []byte(strings.Repeat("side hash ", 30_000))
	for _, tc := range []struct {
		name   string
		origin fetchtest.Fault
		done   bool
	}{
		{name: "a liar, then the origin", origin: fetchtest.Good, done: true},
		{name: "every source lies", origin: fetchtest.Lie},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sides []*sideRec
			var mu sync.Mutex
			p := newPipeline(t, fetch.Config{
				Site:   []fetch.Source{&fetchtest.Static{Label: "lan", Content: content, Fault: fetchtest.LieThenDie}},
				Origin: &fetchtest.Static{Label: "origin", Content: content, Fault: tc.origin},
				SideHash: func(size int64) fetch.SideHasher {
					if size != int64(len(content)) {
						t.Errorf("side hash asked for %d bytes, want %d", size, len(content))
					}
					mu.Lock()
					defer mu.Unlock()
					s := &sideRec{}
					sides = append(sides, s)
					return s
				},
			})
			_, err := p.run(t, &fetch.Request{URL: "http://o.test/a.deb", Expect: expectOf(content), Peers: true})
			if (err == nil) != tc.done {
				t.Fatalf("download: %v", err)
			}
			if len(sides) != 1 {
				t.Fatalf("%d side hashes for one download", len(sides))
			}
			s := sides[0]
			if !tc.done {
				if len(s.dones) != 0 {
					t.Fatalf("Done called for a download that failed: %v", s.dones)
				}
				return
			}
			if len(s.dones) != 1 || s.dones[0] != store.DigestOf(content) {
				t.Fatalf("Done calls %v, want one with the file's digest", s.dones)
			}
			if string(s.b) != string(content) {
				t.Fatalf("the side hash saw %d bytes that are not the file's %d", len(s.b), len(content))
			}
		})
	}
}
