package proxy

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// maxMediaInfoSmall bounds MD5SUM and pubkey files held in memory.
const maxMediaInfoSmall = 4 << 20

// serveMD5SUM answers a medium's media_info/MD5SUM. It is revalidated with
// the origin on every request (a conditional GET; concurrent requests share
// one), as urpmi decides from it whether anything changed; the held copy is
// served when every origin is down. The copy served is the one the
// medium's other media_info files are then checked against.
func (s *Server) serveMD5SUM(w http.ResponseWriter, r *http.Request, t Target) {
	e, fresh, err := s.refreshSmall(r.Context(), t.URL, 0)
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	source := "cache"
	if fresh {
		source = "origin"
	}
	s.metrics.requests.WithLabelValues("hit").Inc()
	s.serveBlob(w, r, t, e.Digest, entryMeta{e.ContentType, e.LastModified, e.ETag}, source)
}

// mediumSums returns the parsed MD5SUM held for the medium at dir (a clean
// path on t's origin), fetching it first when none is held.
func (s *Server) mediumSums(ctx context.Context, t Target, dir string) (map[string][16]byte, string, error) {
	u := urlFor(t, dir+"/media_info/MD5SUM")
	held := s.heldEntry(u)
	var e store.URLEntry
	if held != nil {
		e = *held
	} else {
		var err error
		if e, _, err = s.refreshSmall(ctx, u, 0); err != nil {
			return nil, u, err
		}
	}
	data, err := s.readBlob(e.Digest, maxMediaInfoSmall)
	if err != nil {
		return nil, u, fmt.Errorf("reading the held %s: %w", u, err)
	}
	sums, err := urpmi.ParseMD5SUM(bytes.NewReader(data))
	if err != nil {
		return nil, u, fmt.Errorf("%s: %w", u, err)
	}
	return sums, u, nil
}

// serveMediaInfo answers a file of a medium's media_info/ other than MD5SUM
// and pubkey (synthesis, hdlist, xml info, descriptions, versioned copies).
// A file that the held MD5SUM lists is served only when its MD5 matches that
// MD5SUM: the held copy if it does, else a fresh copy from the origin (and
// its mirrors) that does; never one that does not. Such files are never
// asked of peers (MD5 proves nothing against a forger). A verified synthesis
// is parsed in the background for the medium's rpm names and sizes. Files
// MD5SUM does not list are cached by URL like any proxy would.
func (s *Server) serveMediaInfo(w http.ResponseWriter, r *http.Request, t Target) {
	dir, _ := urpmi.MediumDir(t.Path)
	base := path.Base(t.Path)
	sums, md5URL, err := s.mediumSums(r.Context(), t, dir)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			// A medium without MD5SUM: nothing to check against.
			s.serveByURL(w, r, t, t.Kind == KindVolatile)
			return
		}
		s.fail(w, r, t, err, 0)
		return
	}
	want, listed := sums[base]
	if !listed {
		s.serveByURL(w, r, t, t.Kind == KindVolatile)
		return
	}
	medium := urlFor(t, dir)
	if e, err := s.store.GetURL(t.URL); err == nil && s.store.HasBlob(e.Digest) {
		if got, ok := s.blobMD5(e.Digest); ok && got == want {
			s.metrics.requests.WithLabelValues("hit").Inc()
			s.afterMediaInfo(t, medium, e.Digest)
			s.serveBlob(w, r, t, e.Digest, entryMeta{e.ContentType, e.LastModified, e.ETag}, "cache")
			return
		}
	}
	s.metrics.requests.WithLabelValues("miss").Inc()
	exp, _ := urpmi.ExpectMD5(sums, base)
	exp.Root = md5URL
	inner := exp.Check
	exp.Check = func(f *os.File) error {
		if err := inner(f); err != nil {
			return fmt.Errorf("%s does not match the MD5SUM served: %s", t.URL, strings.ReplaceAll(err.Error(), f.Name(), "the download"))
		}
		return nil
	}
	f, err := s.join(fmt.Sprintf("md5:%x:%s", want, t.URL), t.URL, &exp, -1, func(ctx context.Context, f *flight) error {
		if err := s.runOriginOnly(ctx, f, t, s.cfg.origins(t.URL)); err != nil {
			return err
		}
		f.mu.Lock()
		meta := f.meta
		f.mu.Unlock()
		if err := s.store.PutMeta(metaURPMIMD5+f.digest.String(), want[:]); err != nil {
			return fmt.Errorf("recording the MD5 of %s: %w", t.URL, err)
		}
		if err := s.store.PutURL(t.URL, store.URLEntry{Digest: f.digest, Size: f.w.Size(), ContentType: meta.ContentType,
			LastModified: meta.LastModified, ETag: meta.ETag, Fetched: s.now()}); err != nil {
			return fmt.Errorf("recording %s: %w", t.URL, err)
		}
		s.afterMediaInfo(t, medium, f.digest)
		return nil
	})
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	s.waitOrStream(w, r, t, f, entryMeta{})
}

// blobMD5 returns the MD5 of a held blob, computed once and remembered.
func (s *Server) blobMD5(d store.Digest) ([16]byte, bool) {
	var sum [16]byte
	if v, err := s.store.GetMeta(metaURPMIMD5 + d.String()); err == nil && len(v) == len(sum) {
		copy(sum[:], v)
		return sum, true
	}
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		return sum, false
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, false
	}
	copy(sum[:], h.Sum(nil))
	if err := s.store.PutMeta(metaURPMIMD5+d.String(), sum[:]); err != nil {
		s.log.Warn("recording a blob's MD5", "sha256", d, "err", err)
	}
	return sum, true
}

// afterMediaInfo runs once a media_info file matching MD5SUM is held:
// a synthesis (current or versioned copy) is parsed for the medium's rpms.
func (s *Server) afterMediaInfo(t Target, medium string, d store.Digest) {
	if k, _ := urpmi.Classify(t.Path); k == urpmi.KindSynthesis || k == urpmi.KindVersioned && strings.Contains(path.Base(t.Path), "synthesis.hdlist") {
		s.maybeParseSynthesis(d, medium, t.URL)
	}
}

// maybeParseSynthesis parses a synthesis that matched MD5SUM once, in the
// background, recording for each package with a @filesize@ that
// <medium>/<NEVRA>.rpm is that package of exactly that size. One synthesis
// may serve several media (mirrors under other host names), so the done key
// names both.
func (s *Server) maybeParseSynthesis(d store.Digest, medium, synthURL string) {
	s.parseOnce(medium, metaURPMIParsed+d.String()+"|"+medium, "synthesis", synthURL, func() (int, error) {
		return s.parseSynthesis(d, medium)
	})
}

func (s *Server) parseSynthesis(d store.Digest, medium string) (int, error) {
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b := newExpectBatch(s.store)
	err = urpmi.ParseSynthesisCompressed(f, func(e urpmi.SynthEntry) error {
		if e.FileSize <= 0 {
			return nil // no exact size: such an rpm is cached by URL only
		}
		return b.add(metaURPMIRecord+joinURL(medium, e.NEVRA+".rpm"), store.Expect{Size: e.FileSize, Root: medium})
	})
	if err != nil {
		return b.n, err
	}
	return b.n, b.flush()
}

// servePubkey answers a medium's media_info/pubkey, revalidated like any
// volatile file. The first pubkey seen for a medium is pinned: its key IDs
// are what the medium's rpms are verified against from then on. A later
// pubkey holding a key that is neither pinned nor configured is refused
// (502, and a verification failure on the status page): urpmi would import
// it and trust whatever it signs.
func (s *Server) servePubkey(w http.ResponseWriter, r *http.Request, t Target) {
	dir, _ := urpmi.MediumDir(t.Path)
	e, fresh, err := s.refreshSmall(r.Context(), t.URL, s.revalidateEvery)
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	data, err := s.readBlob(e.Digest, maxMediaInfoSmall)
	if err != nil {
		s.fail(w, r, t, fmt.Errorf("reading the held %s: %w", t.URL, err), http.StatusServiceUnavailable)
		return
	}
	if err := s.checkPubkey(urlFor(t, dir), t.URL, data); err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	source := "cache"
	if fresh {
		source = "origin"
	}
	s.metrics.requests.WithLabelValues("hit").Inc()
	s.serveBlob(w, r, t, e.Digest, entryMeta{e.ContentType, e.LastModified, e.ETag}, source)
}

// checkPubkey pins the medium's first pubkey and refuses a later one that
// brings keys neither pinned nor configured.
func (s *Server) checkPubkey(medium, u string, data []byte) error {
	ks, err := rpmsig.LoadKeys(data)
	if err != nil {
		return &verifyError{reason: fmt.Sprintf("%s holds no usable OpenPGP key: %v", u, err)}
	}
	if s.cfg.RPM.ConfiguredKeysOnly {
		return nil // pubkeys are never trusted: nothing to pin
	}
	_, err, _ = s.roots.group.Do("pin|"+medium, func() (any, error) {
		pinned, err := s.store.GetMeta(metaURPMIPin + medium)
		if errors.Is(err, store.ErrNotFound) {
			if err := s.store.PutMeta(metaURPMIPin+medium, data); err != nil {
				return nil, fmt.Errorf("pinning the pubkey of %s: %w", medium, err)
			}
			s.log.Info("pinned the medium's pubkey on first use", "medium", medium, "keys", strings.Join(ks.KeyIDs(), ","))
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the pinned pubkey of %s: %w", medium, err)
		}
		pks, err := rpmsig.LoadKeys(pinned)
		if err != nil {
			return nil, fmt.Errorf("the pinned pubkey of %s no longer loads: %w", medium, err)
		}
		allowed := map[string]bool{}
		for _, id := range unionIDs(pks.KeyIDs(), s.cfg.RPM.Keys.KeyIDs()) {
			allowed[id] = true
		}
		var unknown []string
		for _, id := range ks.KeyIDs() {
			if !allowed[id] {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) == 0 {
			return nil, nil
		}
		reason := fmt.Sprintf("%s now holds key %s, but key %s was pinned for this medium on first use; refusing it (if the medium really changed its signing key, configure the new key with --rpm-key)",
			u, strings.Join(unknown, ","), strings.Join(pks.KeyIDs(), ","))
		s.metrics.verifyFailures.WithLabelValues("origin").Inc()
		s.recordFailure(u, "", "origin", reason)
		s.log.Warn("medium pubkey refused", "medium", medium, "reason", reason)
		return nil, &verifyError{reason: reason}
	})
	return err
}

// mediumKeys returns the key sets a medium's rpms are verified against: the
// configured keys, then (unless ConfiguredKeysOnly) the medium's pinned
// pubkey, fetched from the origin and pinned on first use as urpmi does.
func (s *Server) mediumKeys(ctx context.Context, t Target, dir string) []*rpmsig.KeySet {
	sets := []*rpmsig.KeySet{s.cfg.RPM.Keys}
	if s.cfg.RPM.ConfiguredKeysOnly {
		return sets
	}
	medium := urlFor(t, dir)
	pinned, err := s.store.GetMeta(metaURPMIPin + medium)
	if errors.Is(err, store.ErrNotFound) {
		u := urlFor(t, dir+"/media_info/pubkey")
		e, _, ferr := s.refreshSmall(ctx, u, s.revalidateEvery)
		if ferr == nil {
			var data []byte
			if data, ferr = s.readBlob(e.Digest, maxMediaInfoSmall); ferr == nil {
				ferr = s.checkPubkey(medium, u, data)
			}
		}
		if ferr != nil {
			s.log.Warn("no pubkey for the medium", "medium", medium, "err", ferr)
		}
		pinned, err = s.store.GetMeta(metaURPMIPin + medium)
	}
	if err != nil {
		return sets
	}
	ks, err := rpmsig.LoadKeys(pinned)
	if err != nil {
		s.log.Warn("the pinned pubkey no longer loads", "medium", medium, "err", err)
		return sets
	}
	return append(sets, ks)
}

func keyIDsOf(sets []*rpmsig.KeySet) []string {
	var ids []string
	for _, ks := range sets {
		ids = unionIDs(ids, ks.KeyIDs())
	}
	return ids
}

// serveRPM answers a .rpm. When a verified synthesis of its medium lists it,
// it is fetched by name key (peers, then origins) and accepted only with a
// header signature by a medium key, a matching payload digest, the NEVRA of
// its file name and the synthesis' exact size; once verified it is stored
// by its SHA-256, the name key maps to it, and peers may have it. When an
// rpm-md primary.xml lists it, it is fetched by that SHA-256 (with the
// signature check too when keys are configured). Otherwise it is cached by
// URL and never taken from peers.
func (s *Server) serveRPM(w http.ResponseWriter, r *http.Request, t Target) {
	ctx := r.Context()
	rec, err := s.store.GetExpect(metaURPMIRecord + t.URL)
	digest, derr := s.store.GetExpect(t.URL)
	if errors.Is(err, store.ErrNotFound) && errors.Is(derr, store.ErrNotFound) && s.parses.wait(ctx, t.URL, 2*time.Minute) {
		rec, err = s.store.GetExpect(metaURPMIRecord + t.URL)
		digest, derr = s.store.GetExpect(t.URL)
	}
	if err == nil {
		dir, _ := urpmi.MediumDir(t.Path)
		sets := s.mediumKeys(ctx, t, dir)
		ids := keyIDsOf(sets)
		if len(ids) == 0 {
			s.log.Warn("no key to verify the medium's rpms; caching by URL only (configure --rpm-key or let the medium's pubkey be fetched)", "rpm", t.URL)
			s.serveByURL(w, r, t, false)
			return
		}
		nevra := strings.TrimSuffix(path.Base(t.Path), ".rpm")
		exp := repoindex.Expectation{Size: rec.Size, Key: urpmi.NameKey(ids, nevra, rec.Size), Root: rec.Root,
			Check: rpmCheck(t.URL, nevra, rec.Size, sets...)}
		var held *store.Expect
		if derr == nil {
			held = &digest
		}
		s.serveNamed(w, r, t, &exp, held)
		return
	}
	if derr == nil {
		exp := repoindex.Expectation{SHA256: digest.SHA256[:], Size: digest.Size, Key: repoindex.DigestKey(digest.SHA256[:]), Root: digest.Root}
		if s.cfg.RPM.Keys.Len() > 0 {
			exp.Check = rpmCheck(t.URL, "", -1, s.cfg.RPM.Keys)
		}
		s.serveDigest(w, r, t, &exp, nil)
		return
	}
	s.serveByURL(w, r, t, false)
}

// serveNamed answers an rpm known by name key: the blob the key maps to, or
// a held blob with the rpm-md digest of the same URL once it passes the
// check, or the fetch pipeline.
func (s *Server) serveNamed(w http.ResponseWriter, r *http.Request, t Target, exp *repoindex.Expectation, byDigest *store.Expect) {
	if d, ok := s.nameDigest(exp.Key); ok {
		s.metrics.requests.WithLabelValues("hit").Inc()
		s.serveBlob(w, r, t, d, entryMeta{}, "cache")
		return
	}
	// A copy may be held under another key: fetched by a dnf client of the
	// same medium (by digest), or verified by name before the set of
	// trusted keys changed (by URL). Prove it the urpmi way once, then
	// share it by this name too.
	var held []store.Digest
	if byDigest != nil && byDigest.Size == exp.Size {
		held = append(held, byDigest.SHA256)
	}
	if e, err := s.store.GetURL(t.URL); err == nil && e.Verified && e.Size == exp.Size {
		held = append(held, e.Digest)
	}
	for _, d := range held {
		if !s.store.HasBlob(d) {
			continue
		}
		if err := s.checkBlob(d, exp); err != nil {
			s.log.Warn("held copy fails the urpmi check; fetching again", "url", t.URL, "sha256", d, "err", err)
			continue
		}
		s.recordName(t, exp.Key, d)
		s.metrics.requests.WithLabelValues("hit").Inc()
		s.serveBlob(w, r, t, d, entryMeta{}, "cache")
		return
	}
	s.metrics.requests.WithLabelValues("miss").Inc()
	if r.Method == http.MethodHead && exp.Size >= 0 {
		setMeta(w.Header(), t, entryMeta{})
		w.Header().Set("Content-Length", fmt.Sprint(exp.Size))
		return
	}
	f, err := s.join("name:"+exp.Key, t.URL, exp, exp.Size, func(ctx context.Context, f *flight) error {
		if err := s.runVerified(ctx, f, t, s.cfg.origins(t.URL)); err != nil {
			return err
		}
		s.recordName(t, exp.Key, f.digest)
		return nil
	})
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	s.waitOrStream(w, r, t, f, entryMeta{})
}

// nameDigest returns the held blob a name key maps to.
func (s *Server) nameDigest(key string) (store.Digest, bool) {
	v, err := s.store.GetMeta(metaRPMName + key)
	if err != nil || len(v) != len(store.Digest{}) {
		return store.Digest{}, false
	}
	d := store.Digest(v)
	return d, s.store.HasBlob(d)
}

// recordName maps a name key (and the URL) to the verified blob and marks
// the blob shareable with peers.
func (s *Server) recordName(t Target, key string, d store.Digest) {
	if err := s.store.PutMeta(metaRPMName+key, d[:]); err != nil {
		s.log.Warn("recording an rpm's name key", "url", t.URL, "err", err)
	}
	if bi, err := s.store.Stat(d); err == nil {
		if err := s.store.PutURL(t.URL, store.URLEntry{Digest: d, Size: bi.Size, ContentType: "application/x-rpm", Fetched: s.now(), Verified: true}); err != nil {
			s.log.Warn("recording an rpm's URL", "url", t.URL, "err", err)
		}
	}
	s.afterVerified(t, d)
}

// checkBlob runs exp's size and Check on a held blob.
func (s *Server) checkBlob(d store.Digest, exp *repoindex.Expectation) error {
	f, size, err := s.store.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	if exp.Size >= 0 && size != exp.Size {
		return fmt.Errorf("blob %s is %d bytes, %d expected", d, size, exp.Size)
	}
	if exp.Check == nil {
		return nil
	}
	return exp.Check(f)
}
