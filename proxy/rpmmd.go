package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmmd"
)

// repomdState is what pkgswarm remembers of a repository's accepted
// repomd.xml (metaRPMMDRepo).
type repomdState struct {
	Signed   bool      `json:"signed"`
	Signer   string    `json:"signer,omitempty"`
	Revision string    `json:"revision,omitempty"`
	Accepted time.Time `json:"accepted"`
}

func decodeRepomdState(b []byte) (repomdState, error) {
	var st repomdState
	if err := json.Unmarshal(b, &st); err != nil {
		return repomdState{}, fmt.Errorf("repomd state: %w", err)
	}
	return st, nil
}

// rpmmdRepo is the repository URL of a repodata/ file URL.
func rpmmdRepo(u string) string { return urlDir(urlDir(u)) }

// serveRepomd answers repodata/repomd.xml and repomd.xml.asc: the
// repository's root is revalidated at most once per window, verified against
// repomd.xml.asc with the configured keys when the origin has one (else
// taken as is, which the status page says), and the accepted copy is
// served; it keeps serving when the origin is down or sends a repomd.xml
// that is refused.
func (s *Server) serveRepomd(w http.ResponseWriter, r *http.Request, t Target) {
	repo := rpmmdRepo(t.URL)
	_, err, _ := s.roots.group.Do("rpmmd|"+repo, func() (any, error) {
		return nil, s.refreshRepomd(r.Context(), repo)
	})
	e, gerr := s.store.GetURL(t.URL)
	if gerr == nil && s.store.HasBlob(e.Digest) {
		if err != nil {
			s.log.Warn("serving the held repomd", "url", t.URL, "reason", err)
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

// refreshRepomd brings the held repomd.xml of repo up to date.
func (s *Server) refreshRepomd(ctx context.Context, repo string) error {
	return s.revalidate(ctx, "rpmmd|"+repo, repo, func(ctx context.Context) error {
		return s.fetchRepomd(ctx, repo)
	})
}

func (s *Server) fetchRepomd(ctx context.Context, repo string) error {
	xmlURL := repo + "/repodata/repomd.xml"
	ascURL := xmlURL + ".asc"
	held := s.heldEntry(xmlURL)
	got, err := s.getRoot(ctx, xmlURL, held)
	if err != nil {
		return err
	}
	if got == nil || held != nil && sameBytes(s.store, held.Digest, got.data) {
		held.Fetched = s.now()
		return s.store.PutURL(xmlURL, *held)
	}
	asc, err := s.getRoot(ctx, ascURL, nil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	var prev *repomdState
	if b, err := s.store.GetMeta(metaRPMMDRepo + repo); err == nil {
		if st, err := decodeRepomdState(b); err == nil {
			prev = &st
		}
	}
	keys := s.cfg.RPM.Keys
	st := repomdState{Accepted: s.now()}
	var md *rpmmd.Repomd
	switch {
	case asc != nil && keys.Len() > 0:
		md, err = rpmmd.VerifyRepomd(got.data, asc.data, keys.Entities())
		if err != nil {
			return s.refuseRepomd(repo, xmlURL, fmt.Sprintf("%s refused: %v", xmlURL, err))
		}
		st.Signed, st.Signer = true, md.SignerKeyID
	case asc == nil && prev != nil && prev.Signed:
		return s.refuseRepomd(repo, xmlURL, fmt.Sprintf("%s has no repomd.xml.asc, but the accepted one was signed by %s", xmlURL, prev.Signer))
	default:
		md, err = rpmmd.ParseRepomd(bytes.NewReader(got.data))
		if err != nil {
			return s.refuseRepomd(repo, xmlURL, fmt.Sprintf("%s refused: %v", xmlURL, err))
		}
		if asc != nil {
			s.log.Info("repomd.xml.asc not checked: no --rpm-key is configured", "repo", repo)
		}
	}
	st.Revision = md.Revision
	if st.Signed && prev != nil && prev.Signed && revisionOlder(md.Revision, prev.Revision) {
		return s.refuseRepomd(repo, xmlURL, fmt.Sprintf("%s has revision %s, older than the accepted revision %s (roots never move backwards)", xmlURL, md.Revision, prev.Revision))
	}
	files := []rootFile{{url: xmlURL, got: got}}
	if asc != nil {
		files = append(files, rootFile{url: ascURL, got: asc})
	} else if err := s.store.DeleteURL(ascURL); err != nil {
		return fmt.Errorf("forgetting the old %s: %w", ascURL, err)
	}
	if err := s.registerRepomd(repo, md); err != nil {
		return err
	}
	if _, err := s.storeRootFiles(files, st.Signed); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	if err := s.store.PutMeta(metaRPMMDRepo+repo, b); err != nil {
		return fmt.Errorf("recording the repomd of %s: %w", repo, err)
	}
	s.log.Info("repomd accepted", "repo", repo, "revision", md.Revision, "signed", st.Signed, "signer", st.Signer, "files", len(md.Data))
	return nil
}

// revisionOlder reports whether revision a is older than b, when both are
// integers (createrepo writes a Unix time); other revisions are not ordered.
func revisionOlder(a, b string) bool {
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

func (s *Server) refuseRepomd(repo, u, reason string) error {
	s.metrics.rootsRefused.Inc()
	s.metrics.verifyFailures.WithLabelValues("origin").Inc()
	s.recordFailure(u, "", "origin", reason)
	s.log.Warn("repomd refused; the held one keeps serving", "repo", repo, "reason", reason)
	return &verifyError{reason: reason}
}

// registerRepomd records the digest and size of every repodata file and
// which of them are primary lists, to parse once fetched.
func (s *Server) registerRepomd(repo string, md *rpmmd.Repomd) error {
	batch := map[string]store.Expect{}
	var pins []store.Digest
	for _, d := range md.Data {
		if d.SHA256 == nil {
			continue
		}
		dg := store.Digest(d.SHA256)
		batch[joinURL(repo, d.Location)] = store.Expect{SHA256: dg, Size: d.Size, Root: repo}
		pins = append(pins, dg)
		if d.Type == "primary" {
			if err := s.store.PutMeta(metaRPMMDPrimary+dg.String(), []byte(repo)); err != nil {
				return fmt.Errorf("recording the primary list of %s: %w", repo, err)
			}
		}
	}
	if err := s.store.PutExpects(batch); err != nil {
		return fmt.Errorf("recording the repodata of %s: %w", repo, err)
	}
	return s.store.Pin("rpmmd:"+repo, pins)
}

// serveRepodata answers a repodata file: by the digest repomd.xml gives
// (a primary list is then parsed for package digests), else by URL.
func (s *Server) serveRepodata(w http.ResponseWriter, r *http.Request, t Target) {
	e, err := s.store.GetExpect(t.URL)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, t, fmt.Errorf("reading the index for %s: %w", t.URL, err), 0)
			return
		}
		s.serveByURL(w, r, t, false)
		return
	}
	exp := repoindex.Expectation{SHA256: e.SHA256[:], Size: e.Size, Key: repoindex.DigestKey(e.SHA256[:]), Root: e.Root}
	s.serveDigest(w, r, t, &exp, s.maybeParsePrimary)
}

// maybeParsePrimary parses a verified primary list once, in the background,
// recording the SHA-256 and size of every package it lists.
func (s *Server) maybeParsePrimary(d store.Digest) {
	v, err := s.store.GetMeta(metaRPMMDPrimary + d.String())
	if err != nil {
		return
	}
	repo := string(v)
	s.parseOnce(repo, metaRPMMDParsed+d.String()+"|"+repo, "primary.xml", repo, func() (int, error) {
		return s.parsePrimary(d, repo)
	})
}

func (s *Server) parsePrimary(d store.Digest, repo string) (int, error) {
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := decompress.SniffLimit(f, maxIndexSize)
	if err != nil {
		return 0, fmt.Errorf("decompressing primary.xml of %s: %w", repo, err)
	}
	defer rc.Close()
	b := newExpectBatch(s.store)
	err = rpmmd.ParsePrimary(rc, func(p rpmmd.Package) error {
		if p.SHA256 == nil || strings.Contains(p.Location, "..") || path.Ext(p.Location) != ".rpm" {
			return nil
		}
		return b.add(joinURL(repo, p.Location), store.Expect{SHA256: store.Digest(p.SHA256), Size: p.Size, Root: repo})
	})
	if err != nil {
		return b.n, err
	}
	return b.n, b.flush()
}
