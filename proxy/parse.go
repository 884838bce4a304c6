package proxy

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// maxIndexSize bounds a decompressed index (Debian's largest Contents files
// are a few GB; Packages ~ 100 MB).
const maxIndexSize = 4 << 30

// parseTracker tracks index parses in flight per archive, so that a request
// for a package waits for the parse that will tell its digest instead of
// falling back to an unverified fetch.
type parseTracker struct {
	mu      sync.Mutex               // protects running, cond
	running map[string]int           // archive root URL -> parses in flight
	started map[store.Digest]bool    // parses started this run (dedupe)
	changed map[string]chan struct{} // closed when running[archive] changes
}

func (p *parseTracker) init() {
	p.running = map[string]int{}
	p.started = map[store.Digest]bool{}
	p.changed = map[string]chan struct{}{}
}

func (p *parseTracker) begin(archive string, d store.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started[d] {
		return false
	}
	p.started[d] = true
	p.running[archive]++
	return true
}

func (p *parseTracker) end(archive string, d store.Digest, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !ok {
		delete(p.started, d) // let a later request retry
	}
	p.doneLocked(archive)
}

// hold counts as a parse of archive in flight until release is called
// (once).
func (p *parseTracker) hold(archive string) (release func()) {
	p.mu.Lock()
	p.running[archive]++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.doneLocked(archive)
	}
}

// doneLocked ends one parse (or hold) of archive and wakes its waiters.
func (p *parseTracker) doneLocked(archive string) {
	p.running[archive]--
	if p.running[archive] <= 0 {
		delete(p.running, archive)
	}
	if ch, found := p.changed[archive]; found {
		close(ch)
		delete(p.changed, archive)
	}
}

// wait blocks until no parse runs for an archive holding u, or until max.
// It reports whether it waited for any.
func (p *parseTracker) wait(ctx context.Context, u string, max time.Duration) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	waited := false
	for {
		p.mu.Lock()
		var ch chan struct{}
		for archive, n := range p.running {
			if n > 0 && strings.HasPrefix(u, archive+"/") {
				if ch = p.changed[archive]; ch == nil {
					ch = make(chan struct{})
					p.changed[archive] = ch
				}
				break
			}
		}
		p.mu.Unlock()
		if ch == nil {
			return waited
		}
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return waited
		case <-deadline.C:
			return waited
		}
	}
}

// parseOnce runs parse in the background unless the metadata key done is
// set, and sets it when parse succeeds. While it runs, requests under scope
// (an archive or medium URL) that find no expectation wait for it (see
// parseTracker). what and name label the logs.
func (s *Server) parseOnce(scope, done, what, name string, parse func() (int, error)) {
	if v, err := s.store.GetMeta(done); err == nil && len(v) > 0 {
		return
	}
	id := store.DigestOf([]byte(done))
	if !s.parses.begin(scope, id) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		start := time.Now()
		n, err := parse()
		s.parses.end(scope, id, err == nil)
		if err != nil {
			s.log.Warn("parsing "+what+" failed; the files it lists are served unverified until it parses", "index", name, "err", err)
			return
		}
		if err := s.store.PutMeta(done, []byte{1}); err != nil {
			s.log.Warn("recording a parsed "+what, "index", name, "err", err)
		}
		s.log.Info(what+" parsed", "index", name, "entries", n, "dur", time.Since(start).Round(time.Millisecond))
	}()
}

// expectBatch writes expectations in batches of expectBatchSize.
type expectBatch struct {
	st *store.Store
	m  map[string]store.Expect
	n  int // entries added
}

const expectBatchSize = 4096

func newExpectBatch(st *store.Store) *expectBatch {
	return &expectBatch{st: st, m: make(map[string]store.Expect, expectBatchSize)}
}

func (b *expectBatch) add(u string, e store.Expect) error {
	b.m[u] = e
	b.n++
	if len(b.m) >= expectBatchSize {
		return b.flush()
	}
	return nil
}

func (b *expectBatch) flush() error {
	if len(b.m) == 0 {
		return nil
	}
	err := b.st.PutExpects(b.m)
	clear(b.m)
	return err
}

// holdIndexParse makes package requests of d's archive that find no
// expectation wait (see parseTracker.wait) from now until release is called,
// when d is a Packages or Sources index maybeParseIndex would parse. A client
// is answered as soon as an index's digest matched, before the commit and
// before afterVerified starts the parse; apt asks for packages at once, and
// without the hold those requests would find neither an expectation nor a
// parse to wait for, and go to the origin by URL, unverified and unshared.
// Call release after afterVerified (or on failure).
func (s *Server) holdIndexParse(d store.Digest) (release func()) {
	idx, err := s.store.GetMeta(indexKey(d))
	if err != nil {
		return func() {}
	}
	if v, err := s.store.GetMeta(parsedKey(d)); err == nil && len(v) > 0 {
		return func() {}
	}
	repo, _, ok := aptRepo(string(idx))
	if !ok {
		return func() {}
	}
	return s.parses.hold(archiveRoot(repo))
}

// maybeParseIndex parses a verified Packages or Sources index once, in the
// background, recording the digest and size of every file it lists.
func (s *Server) maybeParseIndex(d store.Digest) {
	idx, err := s.store.GetMeta(indexKey(d))
	if err != nil {
		return // not a Packages/Sources index of a verified root
	}
	indexURL := string(idx)
	repo, _, ok := aptRepo(indexURL)
	if !ok {
		return
	}
	archive := archiveRoot(repo)
	s.parseOnce(archive, parsedKey(d), "index", indexURL, func() (int, error) {
		return s.parseIndex(d, indexURL, repo, archive)
	})
}

func (s *Server) parseIndex(d store.Digest, indexURL, repo, archive string) (int, error) {
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := decompress.NewReaderLimit(path.Base(indexURL), f, maxIndexSize)
	if err != nil {
		return 0, fmt.Errorf("decompressing %s: %w", indexURL, err)
	}
	defer rc.Close()
	b := newExpectBatch(s.store)
	add := func(rel string, sum []byte, size int64) error {
		if len(sum) != 32 {
			return nil
		}
		return b.add(archive+"/"+rel, store.Expect{SHA256: store.Digest(sum), Size: size, Root: repo})
	}
	kind, _ := apt.IsIndexPath(strings.TrimPrefix(indexURL, repo+"/"))
	if kind == apt.IndexSources {
		err = apt.ParseSources(rc, func(dir string, sf apt.SourceFile) error {
			return add(path.Join(dir, sf.Name), sf.SHA256, sf.Size)
		})
	} else {
		err = apt.ParsePackages(rc, func(p *apt.Package) error {
			return add(p.Filename, p.SHA256, p.Size)
		})
	}
	if err != nil {
		return b.n, err
	}
	return b.n, b.flush()
}
