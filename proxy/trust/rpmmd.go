package trust

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmmd"
)

// repomdState is what is remembered of a repository's accepted repomd.xml.
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

func (r *Resolver) repomdState(repo string) (*repomdState, bool) {
	b, err := r.st.GetMeta(metaRPMMDRepo + repo)
	if err != nil {
		return nil, false
	}
	st, err := decodeRepomdState(b)
	if err != nil {
		return nil, false
	}
	return &st, true
}

// rpmmdRepo is the repository URL of a repodata/ file URL.
func rpmmdRepo(u string) string { return target.URLDir(target.URLDir(u)) }

// rpmmdRepomd answers repodata/repomd.xml and repomd.xml.asc: the
// repository's root is revalidated at most once per window, verified
// against repomd.xml.asc with the configured keys when the origin has one
// (else taken as is: the repository is then unsigned, and nothing of it is
// shared with peers), and the accepted copy is served; it keeps serving when
// the origin is down or sends a repomd.xml that is refused.
func (r *Resolver) rpmmdRepomd(ctx context.Context, t target.Target) (Plan, error) {
	repo := rpmmdRepo(t.URL)
	e, gone := r.held(t.URL)
	force := gone || (e == nil && path.Base(t.Path) == "repomd.xml")
	err := r.revalidate(ctx, "rpmmd|"+repo, r.cfg.RevalidateEvery, force, func(ctx context.Context) error {
		return r.refreshRepomd(ctx, repo)
	})
	if p, ok := r.heldPlan(FormatRPMMD, t.URL, "cache"); ok {
		if err != nil && !errors.Is(err, fetch.ErrOffline) { // offline is said once, at start
			r.log.Warn("serving the held repomd", "url", t.URL, "reason", err)
		}
		return p, nil
	}
	if err == nil {
		err = fmt.Errorf("no copy of %s is held: %w", t.URL, fetch.ErrNotFound)
	}
	return Plan{}, err
}

func (r *Resolver) refreshRepomd(ctx context.Context, repo string) error {
	xmlURL := repo + "/repodata/repomd.xml"
	ascURL := xmlURL + ".asc"
	s, err := r.getSmall(ctx, xmlURL, rpmmd.MaxRepomd)
	if err != nil || s.same {
		return err
	}
	asc, err := r.fetch.GetSmall(ctx, ascURL, nil, rpmmd.MaxRepomd)
	if err != nil && !fetch.IsNotFound(err) {
		return err
	}
	prev, _ := r.repomdState(repo)
	keys := r.cfg.RPMKeys
	st := repomdState{Accepted: r.now()}
	var md *rpmmd.Repomd
	switch {
	case asc != nil && keys.Len() > 0:
		md, err = rpmmd.VerifyRepomd(s.got.Data, asc.Data, keys.Entities())
		if err != nil {
			return r.refuseRoot(repo, xmlURL, fmt.Errorf("%w: %s: %w", ErrRefused, xmlURL, err))
		}
		st.Signed, st.Signer = true, md.SignerKeyID
	case asc == nil && prev != nil && prev.Signed:
		return r.refuseRoot(repo, xmlURL, fmt.Errorf("%w: %s has no repomd.xml.asc, but the accepted one was signed by %s", ErrRefused, xmlURL, prev.Signer))
	default:
		md, err = rpmmd.ParseRepomd(bytes.NewReader(s.got.Data))
		if err != nil {
			return r.refuseRoot(repo, xmlURL, fmt.Errorf("%w: %s: %w", ErrRefused, xmlURL, err))
		}
		if asc != nil {
			r.log.Info("repomd.xml.asc not checked: no --rpm-key is configured", "repo", repo)
		}
	}
	st.Revision = md.Revision
	if st.Signed && prev != nil && prev.Signed && revisionOlder(md.Revision, prev.Revision) {
		return r.refuseRoot(repo, xmlURL, fmt.Errorf("%w: %s has revision %s, older than the accepted revision %s (roots never move backwards)",
			ErrRefused, xmlURL, md.Revision, prev.Revision))
	}
	if err := r.registerRepomd(repo, md); err != nil {
		return err
	}
	if _, err := r.keep(s, st.Signed); err != nil {
		return err
	}
	if asc != nil {
		if _, err := r.keep(&small{url: ascURL, got: asc}, st.Signed); err != nil {
			return err
		}
	} else if err := r.st.DeleteURL(ascURL); err != nil {
		return fmt.Errorf("forgetting the old %s: %w", ascURL, err)
	}
	b, _ := json.Marshal(st)
	if err := r.st.PutMeta(metaRPMMDRepo+repo, b); err != nil {
		return fmt.Errorf("recording the repomd of %s: %w", repo, err)
	}
	r.known.set(repo, st.Signed)
	r.log.Info("repomd accepted", "repo", repo, "revision", md.Revision, "signed", st.Signed, "signer", st.Signer, "files", len(md.Data))
	return nil
}

// revisionOlder reports whether revision a is older than b, when both are
// integers (createrepo writes a Unix time); other revisions are not ordered.
func revisionOlder(a, b string) bool {
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

// registerRepomd records, in the rpm-md namespace, the digest and size of
// every repodata file repomd.xml lists (only files under repodata/: a repomd
// names no other file) and which of them are primary lists, to parse once
// fetched.
func (r *Resolver) registerRepomd(repo string, md *rpmmd.Repomd) error {
	batch := map[string]store.Expect{}
	var pins []store.Digest
	for _, d := range md.Data {
		if d.SHA256 == nil || !strings.HasPrefix(d.Location, "repodata/") || strings.Contains(d.Location, "..") {
			continue
		}
		dg := store.Digest(d.SHA256)
		batch[expectKey(FormatRPMMD, target.JoinURL(repo, d.Location))] = store.Expect{SHA256: dg, Size: d.Size, Root: repo}
		pins = append(pins, dg)
		if d.Type == "primary" {
			if err := r.st.PutMeta(metaRPMMDPrimary+dg.String(), []byte(repo)); err != nil {
				return fmt.Errorf("recording the primary list of %s: %w", repo, err)
			}
		}
	}
	if err := r.putExpects(batch); err != nil {
		return fmt.Errorf("recording the repodata of %s: %w", repo, err)
	}
	return r.st.Pin("rpmmd:"+repo, pins)
}

// signedRepo reports whether the accepted repomd.xml of repo was signed.
func (r *Resolver) signedRepo(repo string) bool {
	st, ok := r.repomdState(repo)
	return ok && st.Signed
}

// rpmmdRepodata answers a repodata file by the digest repomd.xml gives (a
// primary list is then parsed for package digests). Only a signed repomd
// makes it shareable and lets peers be asked.
func (r *Resolver) rpmmdRepodata(ctx context.Context, t target.Target) (Plan, error) {
	e, err := r.expect(FormatRPMMD, t.URL)
	switch {
	case store.IsNotFound(err):
		if r.known.trusted(t.URL) {
			return Plan{Format: FormatRPMMD, Request: &fetch.Request{URL: t.URL, NoRecord: true}}, nil
		}
		return r.plainImmutable(FormatRPMMD, t), nil
	case err != nil:
		return Plan{}, err
	}
	var req *fetch.Request
	if r.signedRepo(e.Root) {
		req = r.signedRequest(t.URL, &e, r.learnPrimary)
	} else {
		exp := expectation(&e)
		req = &fetch.Request{URL: t.URL, Expect: &exp, Learn: r.learnPrimary}
	}
	if _, err := r.st.GetMeta(metaRPMMDPrimary + e.SHA256.String()); err == nil {
		r.teaches(e.Root, req)
	}
	return Plan{Format: FormatRPMMD, Request: req}, nil
}

// rpmmdRPM is an rpm a primary list gives a digest for. With rpm keys
// configured its signature is checked too (as dnf's gpgcheck), which alone
// proves it; otherwise it is as trusted as the repomd.xml.
func (r *Resolver) rpmmdRPM(t target.Target, e store.Expect) Plan {
	exp := expectation(&e)
	signed := r.signedRepo(e.Root)
	if r.cfg.RPMKeys.Len() > 0 {
		exp.Check = rpmCheck(t.URL, "", -1, r.cfg.RPMKeys)
		signed = true
	}
	req := &fetch.Request{URL: t.URL, Expect: &exp, Peers: signed}
	if signed {
		req.Learn = r.shareable(nil)
	}
	return Plan{Format: FormatRPMMD, Request: req}
}

// learnPrimary parses a verified primary list once, in the background,
// recording the SHA-256 and size of every package it lists.
func (r *Resolver) learnPrimary(d store.Digest) {
	v, err := r.st.GetMeta(metaRPMMDPrimary + d.String())
	if err != nil {
		return
	}
	repo := string(v)
	r.parseOnce(repo, d, "primary.xml", repo, func() (int, error) {
		return r.parseBlob(d, "", false, func(rd io.Reader, b *batch) error {
			return rpmmd.ParsePrimary(rd, func(p rpmmd.Package) error {
				if p.SHA256 == nil || strings.Contains(p.Location, "..") || path.Ext(p.Location) != ".rpm" {
					return nil
				}
				return b.add(expectKey(FormatRPMMD, target.JoinURL(repo, p.Location)), store.Expect{SHA256: store.Digest(p.SHA256), Size: p.Size, Root: repo})
			})
		})
	})
}
