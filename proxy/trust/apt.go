package trust

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
)

// maxRootSize bounds a root read from an origin for verification: the
// largest Release repoindex accepts, plus its signatures. Debian's largest
// InRelease is a few hundred KiB.
const maxRootSize = apt.MaxReleaseSize + 16*apt.MaxSignatureSize

// maxIndexSize bounds a decompressed index (Debian's largest Contents files
// are a few GB; Packages ~ 100 MB).
const maxIndexSize = 4 << 30

// aptRoot answers InRelease, Release and Release.gpg: revalidated against the
// origin at most once per window (at once when the held copy is gone),
// verified, bound to the repository's keys, suite and clock, and served from
// the newest accepted copy when the origin is down or sends a refused one.
func (r *Resolver) aptRoot(ctx context.Context, t target.Target) (Plan, error) {
	repo := t.Dir()
	form := "inrelease"
	if path.Base(t.Path) != "InRelease" {
		form = "release"
	}
	e, gone := r.held(t.URL)
	err := r.revalidate(ctx, "apt|"+repo+"|"+form, r.cfg.RevalidateEvery, gone || e == nil, func(ctx context.Context) error {
		if form == "inrelease" {
			return r.refreshInRelease(ctx, repo)
		}
		return r.refreshReleasePair(ctx, repo)
	})
	if e, _ = r.held(t.URL); e != nil && (err == nil || e.Verified || fetch.IsUnavailable(err)) {
		if err != nil && !errors.Is(err, fetch.ErrOffline) { // offline is said once, at start
			r.log.Warn("serving the held root", "url", t.URL, "reason", err)
		}
		return Plan{Format: FormatApt, Held: &Held{Digest: e.Digest, Meta: metaOf(*e), Source: "cache"}}, nil
	}
	if err == nil {
		err = fmt.Errorf("no copy of %s is held: %w", t.URL, fetch.ErrNotFound)
	}
	return Plan{}, err
}

func (r *Resolver) refreshInRelease(ctx context.Context, repo string) error {
	s, err := r.getSmall(ctx, repo+"/InRelease", maxRootSize)
	if err != nil || s.same {
		return err
	}
	rel, verr := apt.VerifyInRelease(s.got.Data, r.cfg.AptKeyring, r.now())
	return r.acceptAptRoot(repo, rel, verr, s)
}

// refreshReleasePair fetches Release and Release.gpg. Both are fetched
// whole unless both are held and the origin confirms Release.
func (r *Resolver) refreshReleasePair(ctx context.Context, repo string) error {
	ru, su := repo+"/Release", repo+"/Release.gpg"
	if e, _ := r.held(su); e != nil {
		s, err := r.getSmall(ctx, ru, maxRootSize)
		if err != nil || s.same {
			return err
		}
		return r.verifyReleasePair(ctx, repo, s)
	}
	got, err := r.fetch.GetSmall(ctx, ru, nil, maxRootSize)
	if err != nil {
		return err
	}
	return r.verifyReleasePair(ctx, repo, &small{url: ru, got: got})
}

func (r *Resolver) verifyReleasePair(ctx context.Context, repo string, rel *small) error {
	su := repo + "/Release.gpg"
	sig, err := r.fetch.GetSmall(ctx, su, nil, maxRootSize)
	if err != nil && !fetch.IsNotFound(err) {
		return err
	}
	if sig == nil {
		return r.acceptAptRoot(repo, nil, fmt.Errorf("%s has no Release.gpg: %w", repo, apt.ErrUnknownKey), rel)
	}
	parsed, verr := apt.VerifyRelease(rel.got.Data, sig.Data, r.cfg.AptKeyring, r.now())
	return r.acceptAptRoot(repo, parsed, verr, rel, &small{url: su, got: sig})
}

// acceptAptRoot applies the verification of a freshly fetched root (files[0]
// is the root, files[1] a detached signature).
func (r *Resolver) acceptAptRoot(repo string, rel *apt.Release, verr error, files ...*small) error {
	rootURL := files[0].url
	prev, perr := r.st.GetRoot(repo)
	havePrev := perr == nil
	switch {
	case verr == nil:
		keys, err := r.checkAptRoot(repo, rel, prev, havePrev)
		if err != nil {
			return r.refuseRoot(repo, rootURL, err)
		}
		digests := make([]store.Digest, len(files))
		for i, f := range files {
			if digests[i], err = r.keep(f, true); err != nil {
				return err
			}
		}
		if err := r.registerRelease(repo, rel, digests); err != nil {
			return err
		}
		rec := store.RootRecord{Repo: repo, URL: rootURL, Digest: digests[0], Date: rel.Date, ValidUntil: rel.ValidUntil,
			Signer: rel.Signer, Accepted: r.now(), Keys: keys, Suite: rel.Suite, Codename: rel.Codename}
		if len(digests) > 1 {
			rec.Detached = digests[1]
		}
		if err := r.st.PutRoot(rec); err != nil {
			return fmt.Errorf("recording the root of %s: %w", repo, err)
		}
		r.known.set(archiveRoot(repo), true)
		r.log.Info("root accepted", "repo", repo, "date", rel.Date, "signer", rel.Signer, "files", len(rel.Files))
		return nil
	case errors.Is(verr, apt.ErrUnknownKey):
		if havePrev && !prev.Untrusted {
			return r.refuseRoot(repo, rootURL, fmt.Errorf("%w: %s is not signed by a trusted key, but the accepted root was (by %s): %w",
				ErrRefused, rootURL, prev.Signer, verr))
		}
		// A repository no trusted key signs is still cached, by URL, like
		// any proxy would; nothing of it is shared with peers.
		var d store.Digest
		for i, f := range files {
			got, err := r.keep(f, false)
			if err != nil {
				return err
			}
			if i == 0 {
				d = got
			}
		}
		if !havePrev {
			r.log.Warn("repository is not signed by a trusted key; caching it by URL only (add its key with --keyring)", "repo", repo, "reason", verr)
		}
		r.known.set(archiveRoot(repo), false)
		return r.st.PutRoot(store.RootRecord{Repo: repo, URL: rootURL, Digest: d, Untrusted: true, Accepted: r.now()})
	}
	return r.refuseRoot(repo, rootURL, fmt.Errorf("%w: %s: %w", ErrRefused, rootURL, verr))
}

// checkAptRoot applies the rules that bind a repository (DESIGN.md invariant
// 3): a root dated in the future is refused (as apt refuses one "not valid
// yet"), it must name the suite its dists/ path names, and once a trusted
// root was accepted, a later one must be signed by a key that signed an
// earlier one, keep the suite (or codename) its path names, and not be older.
// It returns the keys the repository is bound to from now on.
func (r *Resolver) checkAptRoot(repo string, rel *apt.Release, prev store.RootRecord, havePrev bool) ([]string, error) {
	now := r.now()
	if rel.Date.After(now.Add(r.cfg.MaxClockSkew)) {
		return nil, fmt.Errorf("%w: the root of %s is dated %s, %v ahead of this node's clock (more than the %v allowed): a mirror's clock is wrong, or someone tries to freeze the repository",
			ErrRefused, repo, rel.Date.UTC().Format(time.RFC1123), rel.Date.Sub(now).Round(time.Second), r.cfg.MaxClockSkew)
	}
	suite := suitePath(repo)
	if suite != "" && !suiteMatches(suite, rel) {
		return nil, fmt.Errorf("%w: the root served at %s names suite %q, codename %q, not %q: another suite's root served under this name",
			ErrRefused, repo, rel.Suite, rel.Codename, suite)
	}
	if !havePrev || prev.Untrusted {
		return slices.Clone(rel.Signers), nil
	}
	if len(prev.Keys) > 0 && !intersects(rel.Signers, prev.Keys) {
		return nil, fmt.Errorf("%w: the root of %s is signed by %s, but the repository is bound to the key(s) that signed its accepted roots (%s); if it really changed keys, remove its root with the new key trusted (or configure the key)",
			ErrRefused, repo, strings.Join(rel.Signers, ", "), strings.Join(prev.Keys, ", "))
	}
	if err := keepsName(suite, rel, prev); err != nil {
		return nil, fmt.Errorf("%w: the root of %s %v", ErrRefused, repo, err)
	}
	if rel.Date.Before(prev.Date) {
		return nil, fmt.Errorf("%w: the root of %s is dated %s, older than the accepted root dated %s (roots never move backwards)",
			ErrRefused, repo, rel.Date.UTC().Format(time.RFC1123), prev.Date.UTC().Format(time.RFC1123))
	}
	keys := slices.Clone(prev.Keys)
	for _, k := range rel.Signers {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// suitePath is what a repository's URL names after dists/ ("" for a flat
// repository).
func suitePath(repo string) string {
	_, s, ok := strings.Cut(repo, "/dists/")
	if !ok {
		return ""
	}
	return s
}

// suiteMatches reports whether a root names the suite its path names: as
// its Suite or Codename ("dists/stable", "dists/bookworm"), or the first
// component of a nested path ("dists/buster/updates").
func suiteMatches(suite string, rel *apt.Release) bool {
	if rel.Suite == "" && rel.Codename == "" {
		return true
	}
	first, _, _ := strings.Cut(suite, "/")
	for _, c := range []string{suite, first} {
		if c == rel.Suite || c == rel.Codename {
			return true
		}
	}
	return false
}

// keepsName checks that a root keeps the name its path gives it: reached as
// dists/<codename> the codename must not change; reached as dists/<suite>
// the suite must not change, while its codename may (a distribution's
// release moves "stable" from one codename to the next).
func keepsName(suite string, rel *apt.Release, prev store.RootRecord) error {
	first, _, _ := strings.Cut(suite, "/")
	viaSuite := suite != "" && (prev.Suite == suite || prev.Suite == first)
	if prev.Suite != "" && rel.Suite != prev.Suite {
		return fmt.Errorf("changes its Suite from %q to %q", prev.Suite, rel.Suite)
	}
	if !viaSuite && prev.Codename != "" && rel.Codename != prev.Codename {
		return fmt.Errorf("changes its Codename from %q to %q", prev.Codename, rel.Codename)
	}
	return nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func (r *Resolver) refuseRoot(repo, rootURL string, err error) error {
	r.log.Warn("root refused; the held root keeps serving", "repo", repo, "err", err)
	return r.refused(rootURL, &fetch.VerifyError{URL: rootURL, Sources: []fetch.Contrib{{Source: "origin", Peer: rootURL}}, Err: err})
}

// registerRelease records what a verified Release promises: each listed file
// (and its by-hash name) maps to its digest and size, in the apt namespace;
// Packages and Sources indices are remembered so that, once held, they are
// parsed for package digests. The listed files and the root's own files are
// pinned against eviction.
func (r *Resolver) registerRelease(repo string, rel *apt.Release, rootFiles []store.Digest) error {
	batch := make(map[string]store.Expect, 2*len(rel.Files))
	pins := slices.Clone(rootFiles)
	for p, fs := range rel.Files {
		if len(fs.SHA256) != 32 || strings.Contains(p, "..") {
			continue
		}
		d := store.Digest(fs.SHA256)
		e := store.Expect{SHA256: d, Size: fs.Size, Root: repo}
		batch[expectKey(FormatApt, target.JoinURL(repo, p))] = e
		if rel.AcquireByHash {
			batch[expectKey(FormatApt, target.JoinURL(repo, path.Dir(p)+"/by-hash/SHA256/"+d.String()))] = e
		}
		pins = append(pins, d)
		if kind, ok := apt.IsIndexPath(p); ok && (kind == apt.IndexPackages || kind == apt.IndexSources) {
			if err := r.st.PutMeta(aptIndexKey(d), []byte(repo+"\x00"+p)); err != nil {
				return err
			}
		}
	}
	if err := r.putExpects(batch); err != nil {
		return fmt.Errorf("recording the files of %s: %w", repo, err)
	}
	return r.st.Pin("root:"+repo, pins)
}

// aptIndex answers an index under dists/: by the digest the held root lists
// (with its by-hash name as an alternate, for a mirror caught mid-sync), by
// the digest its by-hash name gives, or else as a plain cache.
func (r *Resolver) aptIndex(ctx context.Context, t target.Target) (Plan, error) {
	exp, err := r.expect(FormatApt, t.URL)
	switch {
	case err == nil:
		req := r.signedRequest(t.URL, &exp, r.learnAptIndex)
		if !strings.Contains(t.Path, "/by-hash/") {
			req.Alternates = []string{t.Dir() + "/by-hash/SHA256/" + exp.SHA256.String()}
		}
		if _, err := r.st.GetMeta(aptIndexKey(exp.SHA256)); err == nil {
			r.teaches(archiveRoot(exp.Root), req)
		}
		return Plan{Format: FormatApt, Request: req}, nil
	case !store.IsNotFound(err):
		return Plan{}, err
	}
	if d, ok := byHashDigest(t.Path); ok {
		// Named by its digest: the bytes must hash to the name. No signed
		// chain lists it, so it is neither asked of peers nor shared.
		return Plan{Format: FormatApt, Request: &fetch.Request{URL: t.URL,
			Expect: &repoindex.Expectation{SHA256: d[:], Size: -1, Root: "its by-hash name"}}}, nil
	}
	if r.known.trusted(t.URL) {
		return Plan{Format: FormatApt, Request: &fetch.Request{URL: t.URL, NoRecord: true}}, nil
	}
	return r.plainVolatile(FormatApt, t), nil
}

// byHashDigest returns the SHA-256 a by-hash/SHA256/<hex> path names.
func byHashDigest(p string) (store.Digest, bool) {
	dir, hex := path.Split(p)
	if !strings.HasSuffix(dir, "/by-hash/SHA256/") {
		return store.Digest{}, false
	}
	d, err := store.ParseDigest(hex)
	return d, err == nil
}

// aptPackage answers a .deb (or source file): by the digest a parsed
// Packages (or Sources) index lists, waiting for a parse of its archive that
// is under way, or fetching (once per root) the Packages index the root
// lists for the file's component and architecture when no client did. A
// file of a trusted archive that no parsed index lists even then is
// streamed from the origin without being kept (it cannot be verified);
// files of other archives are cached by URL, as any proxy would.
func (r *Resolver) aptPackage(ctx context.Context, t target.Target) (Plan, error) {
	exp, err := r.expect(FormatApt, t.URL)
	if store.IsNotFound(err) && r.waitParses(ctx, t.URL) {
		exp, err = r.expect(FormatApt, t.URL)
	}
	if store.IsNotFound(err) && r.known.trusted(t.URL) && r.fetchListingIndex(ctx, t) {
		exp, err = r.expect(FormatApt, t.URL)
	}
	switch {
	case err == nil:
		return Plan{Format: FormatApt, Request: r.signedRequest(t.URL, &exp, nil)}, nil
	case !store.IsNotFound(err):
		return Plan{}, err
	case r.known.trusted(t.URL):
		return Plan{Format: FormatApt, Request: &fetch.Request{URL: t.URL, NoRecord: true}}, nil
	}
	return r.plainImmutable(FormatApt, t), nil
}

// learnAptIndex parses a verified Packages or Sources index once, in the
// background, recording the digest and size of every file it lists.
func (r *Resolver) learnAptIndex(d store.Digest) {
	idx, err := r.st.GetMeta(aptIndexKey(d))
	if err != nil {
		return // not a Packages/Sources index of a verified root
	}
	repo, rel, ok := strings.Cut(string(idx), "\x00")
	if !ok {
		return
	}
	indexURL := target.JoinURL(repo, rel)
	archive := archiveRoot(repo)
	r.parseOnce(archive, d, "index", indexURL, func() (int, error) {
		return r.parseAptIndex(d, indexURL, rel, repo, archive)
	})
}

func (r *Resolver) parseAptIndex(d store.Digest, indexURL, rel, repo, archive string) (int, error) {
	kind, _ := apt.IsIndexPath(rel)
	return r.parseBlob(d, indexURL, false, func(rd io.Reader, b *batch) error {
		add := func(p string, sum []byte, size int64) error {
			if len(sum) != 32 || strings.Contains(p, "..") {
				return nil
			}
			return b.add(expectKey(FormatApt, target.JoinURL(archive, p)), store.Expect{SHA256: store.Digest(sum), Size: size, Root: repo})
		}
		if kind == apt.IndexSources {
			return apt.ParseSources(rd, func(dir string, sf apt.SourceFile) error {
				return add(path.Join(dir, sf.Name), sf.SHA256, sf.Size)
			})
		}
		return apt.ParsePackages(rd, func(p *apt.Package) error {
			return add(p.Filename, p.SHA256, p.Size)
		})
	})
}

// archiveRoot is the directory holding dists/ and pool/, which Packages
// Filename fields are relative to.
func archiveRoot(repo string) string {
	if i := strings.LastIndex(repo, "/dists/"); i >= 0 {
		return repo[:i]
	}
	return repo
}
