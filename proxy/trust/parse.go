package trust

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// parseRetry is how long a failed index parse is remembered: requests in
// that window do not start it again (a bomb or a truncated index costs one
// parse, not one per request).
const parseRetry = 10 * time.Minute

// parses tracks index parses: those running per scope (an archive, a medium,
// a repository), so that a request for a package waits for the parse that
// will tell its digest instead of falling back to an unverified fetch; and
// those that failed, per digest.
type parses struct {
	mu      sync.Mutex               // protects the maps
	running map[string]int           // scope → parses in flight
	started map[string]bool          // done key → started or finished this run
	failed  map[string]time.Time     // done key → when it failed
	changed map[string]chan struct{} // scope → closed when running[scope] changes
	// pending are downloads of indices not parsed yet, by flight key: a
	// client may hold the index (it is answered when the digest matches)
	// before its Learn starts the parse, and must not miss the parse then.
	pending map[string]string // flight key → scope
}

func (p *parses) init() {
	p.running = map[string]int{}
	p.started = map[string]bool{}
	p.failed = map[string]time.Time{}
	p.changed = map[string]chan struct{}{}
	p.pending = map[string]string{}
}

// pend records that the download under flight key will teach scope (see
// pending). It is forgotten once that download has ended.
func (p *parses) pend(scope, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending[key] = scope
}

func (p *parses) begin(scope, done string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started[done] {
		return false
	}
	if at, ok := p.failed[done]; ok && now.Sub(at) < parseRetry {
		return false
	}
	p.started[done] = true
	p.running[scope]++
	return true
}

func (p *parses) end(scope, done string, err error, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[scope]--; p.running[scope] <= 0 {
		delete(p.running, scope)
	}
	if err != nil {
		delete(p.started, done)
		p.failed[done] = now
	}
	if ch, ok := p.changed[scope]; ok {
		close(ch)
		delete(p.changed, scope)
	}
}

// wait blocks until no parse runs, and no download of an index to parse
// runs, for a scope holding u, or until max. flight looks a download up by
// key (nil when none runs). It reports whether it waited for any.
func (p *parses) wait(ctx context.Context, u string, max time.Duration, flight func(key string) <-chan struct{}) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	waited := false
	for {
		p.mu.Lock()
		var ch <-chan struct{}
		for key, scope := range p.pending {
			if !strings.HasPrefix(u, scope+"/") {
				continue
			}
			if done := flight(key); done != nil {
				ch = done
				break
			}
			// Ended: its Learn (which starts the parse, counted in
			// running) ran before, or it failed.
			delete(p.pending, key)
		}
		for scope, n := range p.running {
			if ch != nil {
				break
			}
			if n > 0 && strings.HasPrefix(u, scope+"/") {
				c := p.changed[scope]
				if c == nil {
					c = make(chan struct{})
					p.changed[scope] = c
				}
				ch = c
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

// parseOnce runs parse in the background unless blob d was parsed for scope
// already (or failed within parseRetry), and records success. While it runs,
// requests under scope that find no expectation wait for it. what and name
// label the logs.
func (r *Resolver) parseOnce(scope string, d store.Digest, what, name string, parse func() (int, error)) {
	done := metaParsed + d.String() + "|" + scope
	r.parses.mu.Lock()
	started := r.parses.started[done]
	r.parses.mu.Unlock()
	if started {
		return // the cheap answer for every hit after the first
	}
	if v, err := r.st.GetMeta(done); err == nil && len(v) > 0 {
		r.parses.mu.Lock()
		r.parses.started[done] = true
		r.parses.mu.Unlock()
		return
	}
	if !r.parses.begin(scope, done, r.now()) {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		start := time.Now()
		n, err := parse()
		if err == nil {
			if perr := r.st.PutMeta(done, []byte{1}); perr != nil {
				r.log.Warn("recording a parsed "+what, "index", name, "err", perr)
			}
		}
		r.parses.end(scope, done, err, r.now())
		if err != nil {
			err = fmt.Errorf("parsing %s %s: %w; the files it lists are not served from peers or the cache until it parses (retried after %v)", what, name, err, parseRetry)
			r.log.Warn("index parse failed", "index", name, "err", err)
			r.refused(name, err)
			return
		}
		r.log.Info(what+" parsed", "index", name, "entries", n, "dur", time.Since(start).Round(time.Millisecond))
	}()
}

// waitParses waits (up to Config.ParseWait) for the parses, and downloads of
// indices to parse, that may tell what u is. It reports whether it waited.
func (r *Resolver) waitParses(ctx context.Context, u string) bool {
	return r.parses.wait(ctx, u, r.cfg.ParseWait, func(key string) <-chan struct{} {
		if f := r.fetch.Flight(key); f != nil {
			return f.Done()
		}
		return nil
	})
}

// teaches marks a request for an index that will be parsed for scope once
// held: until its download ends, requests under scope that find no
// expectation wait for it.
func (r *Resolver) teaches(scope string, req *fetch.Request) *fetch.Request {
	r.parses.pend(scope, fetch.KeyOf(req))
	return req
}

// parseBlob reads held blob d into expectations: it opens the blob,
// decompresses it (by the extension of name; by its magic bytes when name is
// ""; not at all when raw), and gives the reader and a batch to parse, then
// flushes the batch. It returns how many expectations were added.
func (r *Resolver) parseBlob(d store.Digest, name string, raw bool, parse func(io.Reader, *batch) error) (int, error) {
	f, _, err := r.st.OpenBlob(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var rd io.Reader = f
	if !raw {
		var rc io.ReadCloser
		if name != "" {
			rc, err = decompress.NewReaderLimit(path.Base(name), f, maxIndexSize)
		} else {
			rc, err = decompress.SniffLimit(f, maxIndexSize)
		}
		if err != nil {
			return 0, fmt.Errorf("decompressing: %w", err)
		}
		defer rc.Close()
		rd = rc
	}
	b := r.newBatch()
	if err := parse(rd, b); err != nil {
		return b.n, err
	}
	return b.n, b.flush()
}
