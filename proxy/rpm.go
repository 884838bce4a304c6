package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
	"github.com/pkgswarm/pkgswarm/repoindex/rpmsig"
	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// RPMConfig configures urpmi media and rpm-md (dnf) repositories.
type RPMConfig struct {
	// Keys are the trusted rpm signing keys (--rpm-key). They verify the
	// header signature of every rpm of a urpmi medium (besides the medium's
	// own pubkey, see ConfiguredKeysOnly), of every rpm of an rpm-md
	// repository, and repodata/repomd.xml.asc. Nil or empty means none:
	// urpmi media then rest on their own pubkey, pinned on first use, and
	// rpm-md repositories on repomd.xml's digests alone (the status page
	// says so).
	Keys *rpmsig.KeySet
	// ConfiguredKeysOnly, when true, never trusts a medium's pubkey: an rpm
	// of a urpmi medium must be signed by one of Keys. False means urpmi's
	// own policy: the medium's pubkey is fetched from the origin on first
	// use and its key IDs are pinned from then on.
	ConfiguredKeysOnly bool
}

// Store metadata keys of the rpm family (all under PutMeta/GetMeta, or
// PutExpects for the per-package records, which come in tens of thousands).
const (
	// metaURPMIRecord + rpm URL, in the expectation index: a urpmi rpm known
	// by its medium's verified synthesis. Expect.Size is the synthesis'
	// @filesize@, Expect.Root the medium URL; Expect.SHA256 is unused (zero).
	metaURPMIRecord = "urpmi:"
	// metaURPMIPin + medium URL: the medium's pubkey as first fetched.
	metaURPMIPin = "urpmi:pin:"
	// metaURPMIMD5 + blob sha256 hex: the blob's MD5 (16 bytes), computed once.
	metaURPMIMD5 = "urpmi:md5:"
	// metaURPMIParsed + synthesis sha256 hex + "|" + medium URL: parsed.
	metaURPMIParsed = "urpmi:parsed:"
	// metaRPMName + name key: the sha256 of the verified rpm (32 bytes).
	metaRPMName = "rpmname:"
	// metaRPMMDPrimary + primary sha256 hex: the repository URL it lists.
	metaRPMMDPrimary = "rpmmd:primary:"
	// metaRPMMDParsed + primary sha256 hex + "|" + repository URL: parsed.
	metaRPMMDParsed = "rpmmd:parsed:"
	// metaRPMMDRepo + repository URL: the accepted repomd.xml's state.
	metaRPMMDRepo = "rpmmd:repo:"
)

// serveRPMFamily answers urpmi media files and rpm-md repositories
// (KindVolatile and KindImmutable paths). It is the only entry point of the
// rpm family; everything it decides is documented at the function it
// dispatches to.
func (s *Server) serveRPMFamily(w http.ResponseWriter, r *http.Request, t Target) {
	switch rpmPathKind(t.Path) {
	case rpmMD5SUM:
		s.serveMD5SUM(w, r, t)
	case rpmPubkey:
		s.servePubkey(w, r, t)
	case rpmMediaInfo:
		s.serveMediaInfo(w, r, t)
	case rpmPackage:
		s.serveRPM(w, r, t)
	case rpmRepomd:
		s.serveRepomd(w, r, t)
	case rpmRepodata:
		s.serveRepodata(w, r, t)
	default:
		s.serveByURL(w, r, t, t.Kind == KindVolatile)
	}
}

type rpmKind int

const (
	rpmOther     rpmKind = iota // media.cfg, mirror lists, anything else: by URL
	rpmMD5SUM                   // <medium>/media_info/MD5SUM
	rpmPubkey                   // <medium>/media_info/pubkey
	rpmMediaInfo                // other files of a medium's media_info/
	rpmPackage                  // *.rpm
	rpmRepomd                   // repodata/repomd.xml and repomd.xml.asc
	rpmRepodata                 // other files of repodata/
)

// rpmPathKind says which handler of the rpm family answers a clean path.
func rpmPathKind(p string) rpmKind {
	base := path.Base(p)
	if k, ok := urpmi.Classify(p); ok {
		switch k {
		case urpmi.KindRPM:
			return rpmPackage
		case urpmi.KindMediaCfg, urpmi.KindMirrorList:
			return rpmOther
		}
		if _, inMedium := urpmi.MediumDir(p); !inMedium {
			return rpmOther // the global media/media_info/ (media.cfg, pubkey)
		}
		switch k {
		case urpmi.KindMD5SUM:
			return rpmMD5SUM
		case urpmi.KindPubkey:
			if base == "pubkey" {
				return rpmPubkey
			}
			return rpmOther
		}
		return rpmMediaInfo
	}
	if path.Base(path.Dir(p)) == "repodata" && path.Dir(path.Dir(p)) != "/" {
		switch base {
		case "repomd.xml", "repomd.xml.asc":
			return rpmRepomd
		case "repomd.xml.key":
			return rpmOther
		}
		return rpmRepodata
	}
	return rpmOther
}

// urlFor is the canonical URL of path p on t's origin, in the form
// ParseTarget gives (so that it keys the same cache entries).
func urlFor(t Target, p string) string {
	return t.Scheme + "://" + t.Host + (&url.URL{Path: p}).EscapedPath()
}

// joinURL appends a relative slash path to a canonical directory URL.
func joinURL(dir, rel string) string {
	return dir + (&url.URL{Path: "/" + rel}).EscapedPath()
}

// serveDigest answers a file whose SHA-256 a repository index gives (rpm-md
// repodata and packages): from the store, else through the fetch pipeline
// (peers, then origins), which runs exp.Check too. after, if not nil, runs
// with the digest once the file is held (on a hit before it is served, on a
// miss once it is committed).
func (s *Server) serveDigest(w http.ResponseWriter, r *http.Request, t Target, exp *repoindex.Expectation, after func(store.Digest)) {
	d := store.Digest(exp.SHA256)
	if s.store.HasBlob(d) {
		s.metrics.requests.WithLabelValues("hit").Inc()
		if after != nil {
			after(d)
		}
		s.serveBlob(w, r, t, d, entryMeta{}, "cache")
		return
	}
	s.metrics.requests.WithLabelValues("miss").Inc()
	if r.Method == http.MethodHead && exp.Size >= 0 {
		setMeta(w.Header(), t, entryMeta{})
		w.Header().Set("Content-Length", strconv.FormatInt(exp.Size, 10))
		w.Header().Set("ETag", etag(d))
		return
	}
	f, err := s.join("sha256:"+exp.Hex(), t.URL, exp, exp.Size, func(ctx context.Context, f *flight) error {
		if err := s.runVerified(ctx, f, t, s.cfg.origins(t.URL)); err != nil {
			return err
		}
		s.afterVerified(t, f.digest)
		if after != nil {
			after(f.digest)
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, t, err, 0)
		return
	}
	s.waitOrStream(w, r, t, f, entryMeta{})
}

// runOriginOnly fills f from t's origins only (never peers), each from the
// start, and commits the first copy that passes f.expect (size when known,
// then Check). It is for files whose only proof is weak (an MD5 listed in
// an unsigned MD5SUM): such files are never asked of peers.
func (s *Server) runOriginOnly(ctx context.Context, f *flight, t Target, candidates []string) error {
	exp := f.expect
	if s.cfg.Offline {
		return fmt.Errorf("%s: %w", t.URL, errOffline)
	}
	var lastErr, verifyErr error
	for _, u := range candidates {
		if f.w.Size() > 0 {
			if err := f.w.Reset(); err != nil {
				return fmt.Errorf("restarting the download of %s: %w", t.URL, err)
			}
		}
		resp, err := s.originGet(ctx, u, nil)
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusNotFound, http.StatusGone:
			resp.Body.Close()
			lastErr = fmt.Errorf("origin %s: %s: %w", u, resp.Status, ErrNotFound)
			continue
		default:
			resp.Body.Close()
			lastErr = &originStatusError{url: u, status: resp.Status, code: resp.StatusCode}
			continue
		}
		meta := entryMeta{resp.Header.Get("Content-Type"), resp.Header.Get("Last-Modified"), resp.Header.Get("ETag")}
		f.mu.Lock()
		f.meta = meta
		f.mu.Unlock()
		if exp.Size < 0 && resp.ContentLength >= 0 {
			f.size.Store(resp.ContentLength)
		}
		f.markReady("origin")
		n, err := s.copyInto(f, resp.Body, 0, 0, exp.Size)
		resp.Body.Close()
		s.metrics.sourceBytes.WithLabelValues("origin").Add(float64(n))
		who := []attemptRef{{a: &attempt{src: s.origin, req: Request{URL: t.URL, FetchURL: u, Expect: exp}}, who: Attempt{Source: "origin", Peer: u}}}
		switch {
		case errors.Is(err, errTooLong):
			verifyErr = s.verifyFailed(f, t, who, fmt.Sprintf("%s: origin %s sent more than the %d bytes %s lists", t.URL, u, exp.Size, exp.Root))
			continue
		case err != nil:
			lastErr = fmt.Errorf("origin %s: reading body: %w", u, err)
			continue
		case resp.ContentLength >= 0 && n != resp.ContentLength:
			lastErr = fmt.Errorf("origin %s: got %d of %d bytes", u, n, resp.ContentLength)
			continue
		case exp.Size >= 0 && n != exp.Size:
			verifyErr = s.verifyFailed(f, t, who, fmt.Sprintf("%s: origin %s sent %d bytes, %s lists %d", t.URL, u, n, exp.Root, exp.Size))
			continue
		}
		if exp.Check != nil {
			if cerr := s.checkWriter(f.w, exp); cerr != nil {
				verifyErr = s.verifyFailed(f, t, who, cerr.Error())
				continue
			}
		}
		d := f.w.Sum()
		if err := f.w.Commit(d); err != nil {
			return fmt.Errorf("storing %s: %w", t.URL, err)
		}
		f.digest = d
		return nil
	}
	if verifyErr != nil {
		return verifyErr
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no origin has %s: %w", t.URL, ErrNotFound)
	}
	return lastErr
}

// refreshSmall brings the held copy of a small volatile file (MD5SUM,
// pubkey) up to date with the origin and returns its entry: a conditional
// GET unless the held copy was confirmed within window (0: always ask).
// Concurrent calls for one URL share one origin request. When every origin
// fails (but does not say 404) the held copy is returned with fresh false.
func (s *Server) refreshSmall(ctx context.Context, u string, window time.Duration) (e store.URLEntry, fresh bool, err error) {
	type result struct {
		e     store.URLEntry
		fresh bool
	}
	v, err, _ := s.roots.group.Do("small|"+u, func() (any, error) {
		held := s.heldEntry(u)
		if held != nil && (s.cfg.Offline || window > 0 && s.now().Sub(held.Fetched) < window) {
			return result{*held, false}, nil
		}
		if s.cfg.Offline {
			return nil, fmt.Errorf("no copy of %s is held: %w", u, errOffline)
		}
		// The fetch outlives the client's request: the result is shared.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		got, err := s.getRoot(ctx, u, held)
		switch {
		case err != nil && held != nil && !errors.Is(err, ErrNotFound):
			s.log.Warn("origins unreachable, serving the held copy", "url", u, "err", err)
			return result{*held, false}, nil
		case err != nil:
			return nil, err
		case got == nil || held != nil && sameBytes(s.store, held.Digest, got.data):
			held.Fetched = s.now()
			if err := s.store.PutURL(u, *held); err != nil {
				return nil, fmt.Errorf("recording revalidation of %s: %w", u, err)
			}
			return result{*held, true}, nil
		}
		d, err := s.putBytes(got.data)
		if err != nil {
			return nil, fmt.Errorf("storing %s: %w", u, err)
		}
		ne := store.URLEntry{Digest: d, Size: int64(len(got.data)), ContentType: got.meta.ContentType,
			LastModified: got.meta.LastModified, ETag: got.meta.ETag, Fetched: s.now()}
		if err := s.store.PutURL(u, ne); err != nil {
			return nil, fmt.Errorf("recording %s: %w", u, err)
		}
		return result{ne, true}, nil
	})
	if err != nil {
		return store.URLEntry{}, false, err
	}
	res := v.(result)
	return res.e, res.fresh, nil
}

// readBlob returns a small blob's bytes.
func (s *Server) readBlob(d store.Digest, max int64) ([]byte, error) {
	f, size, err := s.store.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > max {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d expected", d, size, max)
	}
	return io.ReadAll(f)
}

// rpmCheck returns an Expectation.Check that accepts an rpm only when its
// header signature is by a key of one of sets (tried in order; a set whose
// keys did not sign it passes to the next) and its payload digest matches,
// and, when nevra is not "", the signed header names nevra and the file is
// size bytes. Errors name the URL, not the temporary file.
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

// RPMRepoStatus is one urpmi medium or rpm-md repository as pkgswarm trusts
// it, for the status page.
type RPMRepoStatus struct {
	// Repo is the medium or repository directory URL.
	Repo string `json:"repo"`
	// Kind is "urpmi" or "rpm-md".
	Kind string `json:"kind"`
	// Keys are the IDs of the keys whose rpm signatures are accepted.
	Keys []string `json:"keys,omitempty"`
	// Signed (rpm-md) says repomd.xml was verified against repomd.xml.asc.
	Signed   bool   `json:"signed,omitempty"`
	Signer   string `json:"signer,omitempty"`
	Revision string `json:"revision,omitempty"`
	// Note says in one sentence what trust rests on.
	Note string `json:"note"`
}

// RPMStatus lists the urpmi media whose pubkey is pinned and the rpm-md
// repositories whose repomd.xml was accepted. The lead adds it to
// /_pkgswarm/status (e.g. through Config.Extra, key "rpm").
func (s *Server) RPMStatus() []RPMRepoStatus {
	var out []RPMRepoStatus
	conf := s.cfg.RPM.Keys.KeyIDs()
	_ = s.store.ScanMeta(metaURPMIPin, func(k string, v []byte) error {
		medium := strings.TrimPrefix(k, metaURPMIPin)
		st := RPMRepoStatus{Repo: medium, Kind: "urpmi"}
		ks, err := rpmsig.LoadKeys(v)
		if err == nil {
			st.Keys = unionIDs(conf, ks.KeyIDs())
		}
		st.Note = "rpms are accepted when signed by the configured keys or the medium's pubkey, pinned on first use; the synthesis gives each rpm's name and exact size"
		out = append(out, st)
		return nil
	})
	_ = s.store.ScanMeta(metaRPMMDRepo, func(k string, v []byte) error {
		repo := strings.TrimPrefix(k, metaRPMMDRepo)
		rs, err := decodeRepomdState(v)
		if err != nil {
			return nil
		}
		st := RPMRepoStatus{Repo: repo, Kind: "rpm-md", Keys: conf, Signed: rs.Signed, Signer: rs.Signer, Revision: rs.Revision}
		switch {
		case rs.Signed:
			st.Note = "repomd.xml is signed by a configured key; every repodata file and rpm is checked against its sha256, and each rpm's signature too"
		case len(conf) > 0:
			st.Note = "repomd.xml is not signed (no repomd.xml.asc): its digests are taken as the origin sent them; trust rests on the rpm signatures by the configured keys"
		default:
			st.Note = "repomd.xml is not verified and no --rpm-key is configured: nothing vouches for this repository beyond the origin's word (files are checked against its digests only)"
		}
		out = append(out, st)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

func unionIDs(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range [][]string{a, b} {
		for _, id := range l {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out
}

// LookupRPMName returns the digest of the verified rpm that a name key
// (urpmi.NameKey) maps to, for the peer protocol: a peer asks
// GET /_pkgswarm/v1/rpm/<name-key> and verifies what it gets itself.
func (s *Server) LookupRPMName(nameKey string) (store.Digest, bool) {
	v, err := s.store.GetMeta(metaRPMName + nameKey)
	if err != nil || len(v) != len(store.Digest{}) {
		return store.Digest{}, false
	}
	d := store.Digest(v)
	return d, s.IsVerified(d) && s.store.HasBlob(d)
}

// ServeRPMNameToPeer answers GET/HEAD /_pkgswarm/v1/rpm/{key}: the verified
// rpm a name key maps to (Range supported), with its digest in
// X-Pkgswarm-Sha256, or 404. The lead registers it next to the blob
// endpoint.
func (s *Server) ServeRPMNameToPeer(w http.ResponseWriter, r *http.Request) {
	key := strings.ToLower(r.PathValue("key"))
	d, ok := s.LookupRPMName(key)
	if !ok {
		http.Error(w, "pkgswarm: no verified rpm for name key "+key, http.StatusNotFound)
		return
	}
	f, _, err := s.store.OpenBlob(d)
	if err != nil {
		http.Error(w, "pkgswarm: no verified rpm for name key "+key, http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-rpm")
	w.Header().Set("ETag", etag(d))
	w.Header().Set("X-Pkgswarm-Sha256", d.String())
	http.ServeContent(w, r, "", time.Time{}, f)
}
