package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// maxRootSize bounds a root held in memory for verification. Debian's
// largest InRelease is a few hundred KiB.
const maxRootSize = 32 << 20

// rootState coalesces root refreshes and limits them to one per repository
// per revalidation window.
type rootState struct {
	group singleflight.Group
	mu    sync.Mutex           // protects checked
	check map[string]time.Time // refresh key -> last origin check
}

func (r *rootState) init() { r.check = map[string]time.Time{} }

// serveRoot answers InRelease, Release and Release.gpg: revalidated against
// the origin at most once per window, verified, never accepted older than
// the root held, and served from the newest verified copy when the origin is
// down or sends a bad one.
func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request, t Target) {
	repo, _, ok := aptRepo(t.URL)
	if !ok {
		repo = urlDir(t.URL) // flat repository
	}
	base := path.Base(t.Path)
	form := "inrelease"
	if base != "InRelease" {
		form = "release"
	}
	_, err, _ := s.roots.group.Do(repo+"|"+form, func() (any, error) {
		return nil, s.refreshRoot(r.Context(), repo, form)
	})
	e, gerr := s.store.GetURL(t.URL)
	if gerr == nil && s.store.HasBlob(e.Digest) && (err == nil || e.Verified || isUnavailable(err)) {
		if err != nil {
			s.log.Warn("serving the held root", "url", t.URL, "reason", err)
		}
		s.metrics.requests.WithLabelValues("hit").Inc()
		s.serveBlob(w, r, t, e.Digest, entryMeta{e.ContentType, e.LastModified, e.ETag}, "cache")
		return
	}
	if err == nil {
		err = fmt.Errorf("no copy of %s is held: %w", t.URL, ErrNotFound)
	}
	s.fail(w, r, t, err, 0)
}

func isUnavailable(err error) bool {
	return statusFor(err) == http.StatusGatewayTimeout || errors.Is(err, errOffline)
}

// refreshRoot brings the held root of repo up to date with the origin.
func (s *Server) refreshRoot(ctx context.Context, repo, form string) error {
	return s.revalidate(ctx, repo+"|"+form, repo, func(ctx context.Context) error {
		if form == "inrelease" {
			return s.refreshInRelease(ctx, repo)
		}
		return s.refreshReleasePair(ctx, repo)
	})
}

// revalidate runs refresh at most once per revalidation window for key
// (a failure to reach any origin does not count, so the next request tries
// again). The refresh outlives the client's request: a root is shared.
func (s *Server) revalidate(ctx context.Context, key, what string, refresh func(context.Context) error) error {
	s.roots.mu.Lock()
	last := s.roots.check[key]
	s.roots.mu.Unlock()
	if s.now().Sub(last) < s.revalidateEvery {
		return nil
	}
	if s.cfg.Offline {
		return fmt.Errorf("%s: %w", what, errOffline)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := refresh(ctx)
	if err == nil || !isUnavailable(err) {
		s.roots.mu.Lock()
		s.roots.check[key] = s.now()
		s.roots.mu.Unlock()
	}
	return err
}

// conditional returns the headers of a conditional GET revalidating held
// (none when nothing is held).
func conditional(held *store.URLEntry) http.Header {
	hdr := http.Header{}
	if held != nil {
		if held.ETag != "" {
			hdr.Set("If-None-Match", held.ETag)
		}
		if held.LastModified != "" {
			hdr.Set("If-Modified-Since", held.LastModified)
		}
	}
	return hdr
}

// rootFetch is one root file as fetched from an origin.
type rootFetch struct {
	data []byte
	meta entryMeta
}

// getRoot fetches a root file from the first origin that answers,
// conditionally on held. It returns (nil, nil) for 304.
func (s *Server) getRoot(ctx context.Context, u string, held *store.URLEntry) (*rootFetch, error) {
	var lastErr error
	for _, cand := range s.cfg.origins(u) {
		resp, err := s.originGet(ctx, cand, conditional(held))
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.StatusCode {
		case http.StatusNotModified:
			resp.Body.Close()
			if held != nil {
				return nil, nil
			}
			lastErr = fmt.Errorf("origin %s: 304 for an unconditional request", cand)
			continue
		case http.StatusOK:
			data, err := io.ReadAll(io.LimitReader(resp.Body, maxRootSize+1))
			resp.Body.Close()
			if err != nil {
				lastErr = fmt.Errorf("origin %s: reading: %w", cand, err)
				continue
			}
			if len(data) > maxRootSize {
				lastErr = fmt.Errorf("origin %s: root larger than %d bytes", cand, maxRootSize)
				continue
			}
			s.metrics.sourceBytes.WithLabelValues("origin").Add(float64(len(data)))
			return &rootFetch{data: data, meta: entryMeta{resp.Header.Get("Content-Type"), resp.Header.Get("Last-Modified"), resp.Header.Get("ETag")}}, nil
		case http.StatusNotFound, http.StatusGone:
			resp.Body.Close()
			return nil, fmt.Errorf("origin %s: %s: %w", cand, resp.Status, ErrNotFound)
		default:
			resp.Body.Close()
			lastErr = &originStatusError{url: cand, status: resp.Status, code: resp.StatusCode}
		}
	}
	return nil, lastErr
}

func (s *Server) heldEntry(u string) *store.URLEntry {
	e, err := s.store.GetURL(u)
	if err != nil || !s.store.HasBlob(e.Digest) {
		return nil
	}
	return &e
}

func (s *Server) refreshInRelease(ctx context.Context, repo string) error {
	u := repo + "/InRelease"
	held := s.heldEntry(u)
	got, err := s.getRoot(ctx, u, held)
	if err != nil {
		return err
	}
	if got == nil { // 304: the held copy is current
		held.Fetched = s.now()
		return s.store.PutURL(u, *held)
	}
	if held != nil && sameBytes(s.store, held.Digest, got.data) {
		held.Fetched = s.now()
		return s.store.PutURL(u, *held)
	}
	rel, verr := apt.VerifyInRelease(got.data, s.cfg.Keyring, s.now())
	return s.acceptRoot(repo, u, rel, verr, []rootFile{{url: u, got: got}})
}

func (s *Server) refreshReleasePair(ctx context.Context, repo string) error {
	ru, su := repo+"/Release", repo+"/Release.gpg"
	rel, err := s.getRoot(ctx, ru, nil)
	if err != nil {
		return err
	}
	sig, err := s.getRoot(ctx, su, nil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	files := []rootFile{{url: ru, got: rel}}
	var parsed *apt.Release
	var verr error
	if sig == nil {
		verr = fmt.Errorf("%s has no Release.gpg: %w", repo, apt.ErrUnknownKey)
	} else {
		files = append(files, rootFile{url: su, got: sig})
		parsed, verr = apt.VerifyRelease(rel.data, sig.data, s.cfg.Keyring, s.now())
	}
	return s.acceptRoot(repo, ru, parsed, verr, files)
}

type rootFile struct {
	url string
	got *rootFetch
}

// errRootRefused marks a root that failed verification or would move the
// repository back in time; the held root keeps serving.
var errRootRefused = errors.New("root refused")

// acceptRoot applies the verification result of a freshly fetched root.
func (s *Server) acceptRoot(repo, rootURL string, rel *apt.Release, verr error, files []rootFile) error {
	prev, perr := s.store.GetRoot(repo)
	havePrev := perr == nil
	now := s.now()
	switch {
	case verr == nil:
		if havePrev && !prev.Untrusted && rel.Date.Before(prev.Date) {
			return s.refuseRoot(repo, rootURL, fmt.Sprintf("root %s is dated %s, older than the accepted root dated %s (invariant: roots never move backwards)",
				rootURL, rel.Date.UTC().Format(time.RFC1123), prev.Date.UTC().Format(time.RFC1123)))
		}
		digests, err := s.storeRootFiles(files, true)
		if err != nil {
			return err
		}
		if err := s.registerRelease(repo, rel); err != nil {
			return err
		}
		rec := store.RootRecord{Repo: repo, URL: rootURL, Digest: digests[0], Date: rel.Date, ValidUntil: rel.ValidUntil,
			Signer: rel.Signer, Accepted: now}
		if len(digests) > 1 {
			rec.Detached = digests[1]
		}
		if err := s.store.PutRoot(rec); err != nil {
			return fmt.Errorf("recording root of %s: %w", repo, err)
		}
		s.log.Info("root accepted", "repo", repo, "date", rel.Date, "signer", rel.Signer, "files", len(rel.Files))
		return nil
	case errors.Is(verr, apt.ErrUnknownKey):
		if havePrev && !prev.Untrusted {
			return s.refuseRoot(repo, rootURL, fmt.Sprintf("root %s is not signed by a trusted key, but the held root was: %v", rootURL, verr))
		}
		// A repository no trusted key signs is still cached, by URL, like
		// any proxy would; nothing of it is shared with peers.
		digests, err := s.storeRootFiles(files, false)
		if err != nil {
			return err
		}
		if !havePrev {
			s.log.Warn("repository is not signed by a trusted key; caching it by URL only (add its key with --keyring)", "repo", repo, "reason", verr)
		}
		return s.store.PutRoot(store.RootRecord{Repo: repo, URL: rootURL, Digest: digests[0], Untrusted: true, Accepted: now})
	default:
		return s.refuseRoot(repo, rootURL, fmt.Sprintf("root %s refused: %v", rootURL, verr))
	}
}

func (s *Server) refuseRoot(repo, rootURL, reason string) error {
	s.metrics.rootsRefused.Inc()
	s.metrics.verifyFailures.WithLabelValues("origin").Inc()
	s.recordFailure(rootURL, "", "origin", reason)
	s.log.Warn("root refused; the held root keeps serving", "repo", repo, "reason", reason)
	return &verifyError{reason: reason}
}

// storeRootFiles writes root files into the store and records them by URL.
func (s *Server) storeRootFiles(files []rootFile, verified bool) ([]store.Digest, error) {
	out := make([]store.Digest, 0, len(files))
	for _, f := range files {
		d, err := s.putBytes(f.got.data)
		if err != nil {
			return nil, fmt.Errorf("storing %s: %w", f.url, err)
		}
		if err := s.store.PutURL(f.url, store.URLEntry{Digest: d, Size: int64(len(f.got.data)), ContentType: f.got.meta.ContentType,
			LastModified: f.got.meta.LastModified, ETag: f.got.meta.ETag, Fetched: s.now(), Verified: verified}); err != nil {
			return nil, fmt.Errorf("recording %s: %w", f.url, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// putBytes stores a small byte slice as a blob.
func (s *Server) putBytes(data []byte) (store.Digest, error) {
	w, err := s.store.NewWriter()
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

func sameBytes(st *store.Store, d store.Digest, data []byte) bool {
	bi, err := st.Stat(d)
	return err == nil && bi.Size == int64(len(data)) && store.DigestOf(data) == d
}

// registerRelease records what a verified Release promises: each listed
// file (and its by-hash name) maps to its digest and size; Packages and
// Sources indices are remembered so that, once fetched and verified, they
// are parsed for package digests.
func (s *Server) registerRelease(repo string, rel *apt.Release) error {
	batch := make(map[string]store.Expect, 2*len(rel.Files))
	var pins []store.Digest
	for p, fs := range rel.Files {
		if len(fs.SHA256) != 32 || strings.Contains(p, "..") {
			continue
		}
		d := store.Digest(fs.SHA256)
		e := store.Expect{SHA256: d, Size: fs.Size, Root: repo}
		batch[repo+"/"+p] = e
		if rel.AcquireByHash {
			batch[repo+"/"+path.Dir(p)+"/by-hash/SHA256/"+d.String()] = e
		}
		pins = append(pins, d)
		if kind, ok := apt.IsIndexPath(p); ok && (kind == apt.IndexPackages || kind == apt.IndexSources) {
			if err := s.store.PutMeta(indexKey(d), []byte(repo+"/"+p)); err != nil {
				return err
			}
		}
	}
	if err := s.store.PutExpects(batch); err != nil {
		return fmt.Errorf("recording the files of %s: %w", repo, err)
	}
	return s.store.Pin("root:"+repo, pins)
}

func indexKey(d store.Digest) string  { return "idx:" + d.String() }
func parsedKey(d store.Digest) string { return "parsed:" + d.String() }
