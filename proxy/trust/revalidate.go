package trust

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// revalidator is the one mechanism behind every revalidated file (apt roots,
// repomd.xml, urpmi MD5SUM and pubkey): at most one origin check per key per
// window, shared by concurrent callers, forced when the held copy is gone.
// Only a successful check starts a window: after a refusal or an unreachable
// origin the next request asks again.
type revalidator struct {
	group   singleflight.Group
	mu      sync.Mutex           // protects checked
	checked map[string]time.Time // key → last successful check
}

func (v *revalidator) init() { v.checked = map[string]time.Time{} }

// revalidate runs refresh for key unless a run succeeded within window (0:
// always run) and force is false. The run outlives the caller's request,
// bounded to a minute: its result is shared.
func (r *Resolver) revalidate(ctx context.Context, key string, window time.Duration, force bool, refresh func(context.Context) error) error {
	_, err, _ := r.reval.group.Do(key, func() (any, error) {
		r.reval.mu.Lock()
		last, seen := r.reval.checked[key]
		r.reval.mu.Unlock()
		if !force && seen && window > 0 && r.now().Sub(last) < window {
			return nil, nil
		}
		if r.fetch.Offline() {
			return nil, fmt.Errorf("%s: %w", key, fetch.ErrOffline)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := refresh(ctx); err != nil {
			return nil, err
		}
		r.reval.mu.Lock()
		r.reval.checked[key] = r.now()
		r.reval.mu.Unlock()
		return nil, nil
	})
	return err
}

// held returns the URL entry of u when the store holds its blob. gone reports
// an entry whose blob was evicted (the file must be fetched again).
func (r *Resolver) held(u string) (e *store.URLEntry, gone bool) {
	got, err := r.st.GetURL(u)
	if err != nil {
		return nil, false
	}
	if !r.st.HasBlob(got.Digest) {
		return nil, true
	}
	return &got, false
}

// heldPlan answers with u's held copy.
func (r *Resolver) heldPlan(f Format, u, source string) (Plan, bool) {
	e, _ := r.held(u)
	if e == nil {
		return Plan{}, false
	}
	return Plan{Format: f, Held: &Held{Digest: e.Digest, Meta: metaOf(*e), Source: source}}, true
}

func metaOf(e store.URLEntry) fetch.Meta {
	return fetch.Meta{ContentType: e.ContentType, LastModified: e.LastModified, ETag: e.ETag}
}

// small is one small file fetched from the origin for verification.
type small struct {
	url  string
	got  *fetch.Small
	same bool // the origin confirmed the held copy (304 or the same bytes)
}

// getSmall fetches u conditionally on its held copy. same reports that the
// held copy is current.
func (r *Resolver) getSmall(ctx context.Context, u string, max int64) (*small, error) {
	held, _ := r.held(u)
	got, err := r.fetch.GetSmall(ctx, u, held, max)
	switch {
	case errors.Is(err, fetch.ErrNotModified):
		return &small{url: u, same: true}, r.touch(u, held)
	case err != nil:
		return nil, err
	}
	if held != nil && r.sameBytes(held.Digest, got.Data) {
		return &small{url: u, got: got, same: true}, r.touch(u, held)
	}
	return &small{url: u, got: got}, nil
}

// touch records that the origin confirmed the held copy of u.
func (r *Resolver) touch(u string, held *store.URLEntry) error {
	e := *held
	e.Fetched = r.now()
	if err := r.st.PutURL(u, e); err != nil {
		return fmt.Errorf("recording the revalidation of %s: %w", u, err)
	}
	return nil
}

// sameBytes reports whether blob d holds exactly data, from the store's
// record and the digest, without opening the blob.
func (r *Resolver) sameBytes(d store.Digest, data []byte) bool {
	bi, err := r.st.Stat(d)
	return err == nil && bi.Size == int64(len(data)) && store.DigestOf(data) == d
}

// keep stores a verified (or, for a plain cache, accepted) small file and
// records it by URL.
func (r *Resolver) keep(s *small, verified bool) (store.Digest, error) {
	d, err := r.putBytes(s.got.Data)
	if err != nil {
		return store.Digest{}, fmt.Errorf("storing %s: %w", s.url, err)
	}
	m := s.got.Meta
	if err := r.st.PutURL(s.url, store.URLEntry{Digest: d, Size: int64(len(s.got.Data)), ContentType: m.ContentType,
		LastModified: m.LastModified, ETag: m.ETag, Fetched: r.now(), Verified: verified}); err != nil {
		return store.Digest{}, fmt.Errorf("recording %s: %w", s.url, err)
	}
	return d, nil
}

// putBytes stores a small byte slice as a blob.
func (r *Resolver) putBytes(data []byte) (store.Digest, error) {
	w, err := r.st.NewWriter()
	if err != nil {
		return store.Digest{}, err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort(err)
		return store.Digest{}, err
	}
	d := w.Sum()
	if err := w.Commit(d); err != nil {
		return store.Digest{}, err
	}
	return d, nil
}

// readBlob returns a small blob's bytes, at most max.
func (r *Resolver) readBlob(d store.Digest, max int64) ([]byte, error) {
	f, size, err := r.st.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d a file of this kind may have", d, size, max)
	}
	var b bytes.Buffer
	b.Grow(int(size))
	_, err = io.Copy(&b, f)
	return b.Bytes(), err
}

// refreshSmall brings the held copy of a small volatile file up to date with
// the origin (a conditional GET unless it was confirmed within window; 0:
// always ask) and returns its entry; fresh reports that this call fetched
// new bytes. When every origin is unreachable the held copy is returned.
// accept, if set, judges new bytes before they are kept.
func (r *Resolver) refreshSmall(ctx context.Context, u string, window time.Duration, accept func([]byte) error) (e store.URLEntry, fresh bool, err error) {
	held, gone := r.held(u)
	err = r.revalidate(ctx, "small|"+u, window, gone || held == nil, func(ctx context.Context) error {
		s, err := r.getSmall(ctx, u, maxSmall)
		if err != nil {
			return err
		}
		if s.same {
			return nil
		}
		if accept != nil {
			if err := accept(s.got.Data); err != nil {
				return err
			}
		}
		if _, err := r.keep(s, false); err != nil {
			return err
		}
		fresh = true
		return nil
	})
	cur, _ := r.held(u)
	switch {
	case err == nil && cur != nil:
		return *cur, fresh, nil
	case err == nil:
		return store.URLEntry{}, false, fmt.Errorf("no copy of %s is held: %w", u, fetch.ErrNotFound)
	case cur != nil && fetch.IsUnavailable(err):
		if !errors.Is(err, fetch.ErrOffline) { // offline is said once, at start
			r.log.Warn("origins unreachable, serving the held copy", "url", u, "err", err)
		}
		return *cur, false, nil
	}
	return store.URLEntry{}, false, err
}

// maxSmall bounds MD5SUM and pubkey files held in memory.
const maxSmall = 4 << 20
