package trust

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// urpmiMD5SUM answers a medium's media_info/MD5SUM. It is revalidated with
// the origin on every request (one conditional GET shared by concurrent
// requests), as urpmi decides from it whether anything changed; the held copy
// is served when every origin is down. The copy served is the one the
// medium's other media_info files are then checked against.
func (r *Resolver) urpmiMD5SUM(ctx context.Context, t target.Target) (Plan, error) {
	e, fresh, err := r.refreshSmall(ctx, t.URL, 0, func(b []byte) error {
		_, err := urpmi.ParseMD5SUM(bytes.NewReader(b))
		return err
	})
	if err != nil {
		return Plan{}, err
	}
	return Plan{Format: FormatURPMI, Held: &Held{Digest: e.Digest, Meta: metaOf(e), Source: sourceLabel(fresh)}}, nil
}

func sourceLabel(fresh bool) string {
	if fresh {
		return "origin"
	}
	return "cache"
}

// mediumSums returns the parsed MD5SUM held for the medium at dir, fetching
// it first when none is held.
func (r *Resolver) mediumSums(ctx context.Context, t target.Target, dir string) (map[string][16]byte, string, error) {
	u := t.URLFor(dir + "/media_info/MD5SUM")
	e, _ := r.held(u)
	if e == nil {
		got, _, err := r.refreshSmall(ctx, u, 0, nil)
		if err != nil {
			return nil, u, err
		}
		e = &got
	}
	data, err := r.readBlob(e.Digest, maxSmall)
	if err != nil {
		return nil, u, fmt.Errorf("reading the held %s: %w", u, err)
	}
	sums, err := urpmi.ParseMD5SUM(bytes.NewReader(data))
	if err != nil {
		return nil, u, fmt.Errorf("%s: %w", u, err)
	}
	return sums, u, nil
}

// urpmiMediaInfo answers a file of a medium's media_info/ other than MD5SUM
// and pubkey (synthesis, hdlist, xml info, descriptions, versioned copies).
// A file the held MD5SUM lists is served only when its MD5 matches: the held
// copy if it does, else a fresh copy from the origin (and its mirrors) that
// does; never one that does not. Such files are never asked of peers (MD5
// proves nothing against a forger). A verified synthesis is parsed in the
// background for the medium's rpm names and sizes. Files MD5SUM does not
// list are cached by URL.
func (r *Resolver) urpmiMediaInfo(ctx context.Context, t target.Target) (Plan, error) {
	dir, _ := urpmi.MediumDir(t.Path)
	base := path.Base(t.Path)
	k, _ := urpmi.Classify(t.Path)
	plain := func() Plan {
		if k.Immutable() {
			return r.plainImmutable(FormatURPMI, t)
		}
		return r.plainVolatile(FormatURPMI, t)
	}
	sums, md5URL, err := r.mediumSums(ctx, t, dir)
	if err != nil {
		if fetch.IsNotFound(err) {
			return plain(), nil // a medium without MD5SUM: nothing to check against
		}
		return Plan{}, err
	}
	want, listed := sums[base]
	if !listed {
		return plain(), nil
	}
	medium := t.URLFor(dir)
	if e, _ := r.held(t.URL); e != nil {
		if got, ok := r.blobMD5(e.Digest); ok && got == want {
			r.learnMediaInfo(t, medium, e.Digest)
			return Plan{Format: FormatURPMI, Held: &Held{Digest: e.Digest, Meta: metaOf(*e), Source: "cache"}}, nil
		}
	}
	exp, _ := urpmi.ExpectMD5(sums, base)
	exp.Root = md5URL
	exp.Key = fmt.Sprintf("md5:%x|%s", want, t.URL)
	inner := exp.Check
	exp.Check = func(f *os.File) error {
		if err := inner(f); err != nil {
			return fmt.Errorf("does not match the MD5SUM served: %s", strings.ReplaceAll(err.Error(), f.Name(), "the download"))
		}
		return nil
	}
	req := &fetch.Request{URL: t.URL, Expect: &exp, Learn: func(d store.Digest) {
		if err := r.st.PutMeta(metaURPMIMD5+d.String(), want[:]); err != nil {
			r.log.Warn("recording the MD5 of a media_info file", "url", t.URL, "err", err)
		}
		if err := r.recordURL(t.URL, d, false); err != nil {
			r.log.Warn("recording a media_info file", "url", t.URL, "err", err)
		}
		r.learnMediaInfo(t, medium, d)
	}}
	if k == urpmi.KindSynthesis || k == urpmi.KindVersioned && strings.Contains(base, "synthesis.hdlist") {
		r.teaches(medium, req)
	}
	return Plan{Format: FormatURPMI, Request: req}, nil
}

// recordURL maps u to a held blob.
func (r *Resolver) recordURL(u string, d store.Digest, verified bool) error {
	bi, err := r.st.Stat(d)
	if err != nil {
		return err
	}
	return r.st.PutURL(u, store.URLEntry{Digest: d, Size: bi.Size, Fetched: r.now(), Verified: verified})
}

// blobMD5 returns the MD5 of a held blob, computed once and remembered.
func (r *Resolver) blobMD5(d store.Digest) ([16]byte, bool) {
	var sum [16]byte
	if v, err := r.st.GetMeta(metaURPMIMD5 + d.String()); err == nil && len(v) == len(sum) {
		copy(sum[:], v)
		return sum, true
	}
	f, _, err := r.st.OpenBlob(d)
	if err != nil {
		return sum, false
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, false
	}
	copy(sum[:], h.Sum(nil))
	if err := r.st.PutMeta(metaURPMIMD5+d.String(), sum[:]); err != nil {
		r.log.Warn("recording a blob's MD5", "sha256", d, "err", err)
	}
	return sum, true
}

// learnMediaInfo parses a synthesis (current or versioned copy) that
// matched MD5SUM, once, in the background: each package with a @filesize@
// becomes the record that <medium>/<NEVRA>.rpm is that package of exactly
// that size. One synthesis may serve several media (mirrors under other host
// names), so the parse is per (synthesis, medium).
func (r *Resolver) learnMediaInfo(t target.Target, medium string, d store.Digest) {
	k, _ := urpmi.Classify(t.Path)
	if k != urpmi.KindSynthesis && !(k == urpmi.KindVersioned && strings.Contains(path.Base(t.Path), "synthesis.hdlist")) {
		return
	}
	r.parseOnce(medium, d, "synthesis", t.URL, func() (int, error) {
		return r.parseBlob(d, "", true, func(rd io.Reader, b *batch) error {
			return urpmi.ParseSynthesisCompressed(rd, func(e urpmi.SynthEntry) error {
				if e.FileSize <= 0 {
					return nil // no exact size: such an rpm is cached by URL only
				}
				return b.add(expectKey(FormatURPMI, target.JoinURL(medium, e.NEVRA+".rpm")), store.Expect{Size: e.FileSize, Root: medium})
			})
		})
	})
}

// urpmiPubkey answers a medium's media_info/pubkey, revalidated like any
// volatile file. The first pubkey seen for a medium is pinned: its key IDs
// are what the medium's rpms are verified against from then on. A later
// pubkey holding a key neither pinned nor configured is refused (and not
// kept): urpmi would import it and trust whatever it signs.
func (r *Resolver) urpmiPubkey(ctx context.Context, t target.Target) (Plan, error) {
	dir, _ := urpmi.MediumDir(t.Path)
	medium := t.URLFor(dir)
	e, fresh, err := r.refreshSmall(ctx, t.URL, r.cfg.RevalidateEvery, func(b []byte) error {
		return r.checkPubkey(medium, t.URL, b)
	})
	if err != nil {
		return Plan{}, err
	}
	data, err := r.readBlob(e.Digest, maxSmall)
	if err != nil {
		return Plan{}, fmt.Errorf("reading the held %s: %w", t.URL, err)
	}
	if err := r.checkPubkey(medium, t.URL, data); err != nil {
		return Plan{}, err
	}
	return Plan{Format: FormatURPMI, Held: &Held{Digest: e.Digest, Meta: metaOf(e), Source: sourceLabel(fresh)}}, nil
}

// checkPubkey pins a medium's first pubkey and refuses a later one that
// brings keys neither pinned nor configured.
func (r *Resolver) checkPubkey(medium, u string, data []byte) error {
	ks, err := rpmsig.LoadKeys(data)
	if err != nil {
		return r.refused(u, &fetch.VerifyError{URL: u, Err: fmt.Errorf("%w: %s holds no usable OpenPGP key: %w", ErrRefused, u, err)})
	}
	if r.cfg.RPMConfiguredKeysOnly {
		return nil // pubkeys are never trusted: nothing to pin
	}
	_, err, _ = r.reval.group.Do("pin|"+medium, func() (any, error) {
		pinned, err := r.st.GetMeta(metaURPMIPin + medium)
		if store.IsNotFound(err) {
			if err := r.st.PutMeta(metaURPMIPin+medium, data); err != nil {
				return nil, fmt.Errorf("pinning the pubkey of %s: %w", medium, err)
			}
			r.known.set(medium, true)
			r.log.Info("pinned the medium's pubkey on first use", "medium", medium, "keys", strings.Join(ks.KeyIDs(), ","))
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the pinned pubkey of %s: %w", medium, err)
		}
		pks, err := rpmsig.LoadKeys(pinned)
		if err != nil {
			return nil, fmt.Errorf("the pinned pubkey of %s no longer loads: %w", medium, err)
		}
		allowed := unionIDs(pks.KeyIDs(), r.cfg.RPMKeys.KeyIDs())
		var unknown []string
		for _, id := range ks.KeyIDs() {
			if !slices.Contains(allowed, id) {
				unknown = append(unknown, id)
			}
		}
		if len(unknown) == 0 {
			return nil, nil
		}
		err = fmt.Errorf("%w: %s now holds key %s, but key %s was pinned for this medium on first use (if the medium really changed its signing key, configure the new key with --rpm-key)",
			ErrRefused, u, strings.Join(unknown, ","), strings.Join(pks.KeyIDs(), ","))
		r.log.Warn("medium pubkey refused", "medium", medium, "err", err)
		return nil, r.refused(u, &fetch.VerifyError{URL: u, Sources: []fetch.Contrib{{Source: "origin", Peer: u}}, Err: err})
	})
	return err
}

// mediumKeys returns the key sets a medium's rpms are verified against: the
// configured keys, then (unless only configured keys count) the medium's
// pinned pubkey, fetched from the origin and pinned on first use as urpmi
// does.
func (r *Resolver) mediumKeys(ctx context.Context, t target.Target, dir string) []*rpmsig.KeySet {
	sets := []*rpmsig.KeySet{r.cfg.RPMKeys}
	if r.cfg.RPMConfiguredKeysOnly {
		return sets
	}
	medium := t.URLFor(dir)
	pinned, err := r.st.GetMeta(metaURPMIPin + medium)
	if store.IsNotFound(err) {
		u := t.URLFor(dir + "/media_info/pubkey")
		_, _, ferr := r.refreshSmall(ctx, u, r.cfg.RevalidateEvery, func(b []byte) error {
			return r.checkPubkey(medium, u, b)
		})
		if ferr == nil {
			if e, _ := r.held(u); e != nil {
				if data, err := r.readBlob(e.Digest, maxSmall); err == nil {
					ferr = r.checkPubkey(medium, u, data)
				}
			}
		}
		if ferr != nil {
			r.log.Warn("no pubkey for the medium", "medium", medium, "err", ferr)
		}
		pinned, err = r.st.GetMeta(metaURPMIPin + medium)
	}
	if err != nil {
		return sets
	}
	ks, err := rpmsig.LoadKeys(pinned)
	if err != nil {
		r.log.Warn("the pinned pubkey no longer loads", "medium", medium, "err", err)
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

func unionIDs(a, b []string) []string {
	out := slices.Clone(a)
	for _, id := range b {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// rpm answers a .rpm: by name key when a verified synthesis of its urpmi
// medium lists it, by digest when an rpm-md primary list does, else (for a
// repository no signed chain covers) by URL.
func (r *Resolver) rpm(ctx context.Context, t target.Target) (Plan, error) {
	rec, err := r.expect(FormatURPMI, t.URL)
	dig, derr := r.expect(FormatRPMMD, t.URL)
	if store.IsNotFound(err) && store.IsNotFound(derr) && r.waitParses(ctx, t.URL) {
		rec, err = r.expect(FormatURPMI, t.URL)
		dig, derr = r.expect(FormatRPMMD, t.URL)
	}
	switch {
	case err == nil:
		var byDigest *store.Expect
		if derr == nil {
			byDigest = &dig
		}
		return r.urpmiRPM(ctx, t, rec, byDigest), nil
	case derr == nil:
		return r.rpmmdRPM(t, dig), nil
	case !store.IsNotFound(err):
		return Plan{}, err
	case !store.IsNotFound(derr):
		return Plan{}, derr
	case r.known.trusted(t.URL):
		return Plan{Request: &fetch.Request{URL: t.URL, NoRecord: true}}, nil
	}
	return r.plainImmutable("", t), nil
}

// urpmiRPM is an rpm a medium's synthesis lists: fetched by name key (peers,
// then origins) and accepted only with a header signature by a medium key,
// a matching payload digest, the NEVRA of its file name and the synthesis'
// exact size; once verified it is stored by its SHA-256, the name key maps
// to it, and peers may have it.
func (r *Resolver) urpmiRPM(ctx context.Context, t target.Target, rec store.Expect, byDigest *store.Expect) Plan {
	dir, _ := urpmi.MediumDir(t.Path)
	sets := r.mediumKeys(ctx, t, dir)
	ids := keyIDsOf(sets)
	if len(ids) == 0 {
		r.log.Warn("no key to verify the medium's rpms; caching by URL only (configure --rpm-key or let the medium's pubkey be fetched)", "rpm", t.URL)
		return r.plainImmutable(FormatURPMI, t)
	}
	nevra := strings.TrimSuffix(path.Base(t.Path), ".rpm")
	key := urpmi.NameKey(ids, nevra, rec.Size)
	exp := repoindex.Expectation{Size: rec.Size, Key: key, Root: rec.Root, Check: rpmCheck(t.URL, nevra, rec.Size, sets...)}
	if d, ok := r.nameDigest(key, t, &exp, byDigest); ok {
		exp.SHA256 = d[:]
	}
	learn := func(d store.Digest) {
		if err := r.st.PutName(key, d); err != nil {
			r.log.Warn("recording an rpm's name key", "url", t.URL, "err", err)
		}
		if err := r.recordURL(t.URL, d, true); err != nil {
			r.log.Warn("recording an rpm's URL", "url", t.URL, "err", err)
		}
	}
	return Plan{Format: FormatURPMI, Request: &fetch.Request{URL: t.URL, Expect: &exp, Peers: true, Learn: r.shareable(learn)}}
}

// nameDigest returns the held blob a name key maps to. A copy may also be
// held under another record (fetched by a dnf client of the same medium, by
// digest, or verified by name before the set of trusted keys changed, by
// URL): it is proven the urpmi way once, then mapped by this name too.
func (r *Resolver) nameDigest(key string, t target.Target, exp *repoindex.Expectation, byDigest *store.Expect) (store.Digest, bool) {
	if d, err := r.st.Name(key); err == nil && r.st.HasBlob(d) {
		return d, true
	}
	var held []store.Digest
	if byDigest != nil && byDigest.Size == exp.Size {
		held = append(held, byDigest.SHA256)
	}
	if e, err := r.st.GetURL(t.URL); err == nil && e.Verified && e.Size == exp.Size {
		held = append(held, e.Digest)
	}
	for _, d := range held {
		if err := r.checkBlob(d, exp); err != nil {
			if !store.IsNotFound(err) {
				r.log.Warn("held copy fails the urpmi check; fetching again", "url", t.URL, "sha256", d, "err", err)
			}
			continue
		}
		if err := r.st.PutName(key, d); err != nil {
			r.log.Warn("recording an rpm's name key", "url", t.URL, "err", err)
		}
		return d, true
	}
	return store.Digest{}, false
}

// checkBlob runs exp's size and Check on a held blob.
func (r *Resolver) checkBlob(d store.Digest, exp *repoindex.Expectation) error {
	f, size, err := r.st.OpenBlob(d)
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

// rpmCheck returns an Expectation.Check that accepts an rpm only when its
// header signature is by a key of one of sets (tried in order; a set whose
// keys did not sign it passes to the next) and its payload digest matches,
// and, when nevra is not "", the signed header names nevra and the file is
// size bytes. Errors name the URL, not the temporary file, and wrap the
// rpmsig sentinels.
func rpmCheck(u, nevra string, size int64, sets ...*rpmsig.KeySet) func(f *os.File) error {
	return func(f *os.File) error {
		var firstErr error
		var info *rpmsig.Info
		for _, ks := range sets {
			if ks.Len() == 0 {
				continue
			}
			i, err := rpmsig.Verify(io.NewSectionReader(f, 0, 1<<62), u, ks)
			if err == nil {
				info, firstErr = i, nil
				break
			}
			if firstErr == nil {
				firstErr = err
			}
			if !errors.Is(err, rpmsig.ErrUnknownKey) {
				return err
			}
		}
		if info == nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("rpm %s: %w: no rpm signing key is trusted for it (configure one with --rpm-key)", u, rpmsig.ErrUnknownKey)
			}
			return firstErr
		}
		if nevra != "" && info.NEVRA != nevra {
			return fmt.Errorf("rpm %s: %w: signed header names %s, the metadata %s", u, rpmsig.ErrMismatch, info.NEVRA, nevra)
		}
		if size >= 0 && info.Size != size {
			return fmt.Errorf("rpm %s (%s): %w: %d bytes, the metadata lists %d", u, nevra, rpmsig.ErrMismatch, info.Size, size)
		}
		return nil
	}
}
