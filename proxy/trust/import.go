package trust

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// Importer decides which existing files (`pkgswarm import`) may enter the
// cache: a .deb is added only when a Packages index that a held, accepted,
// trusted apt root lists gives its SHA-256 and size — the proof a download
// must pass — and is then shareable like one.
type Importer struct {
	st     *store.Store
	listed map[store.Digest]debRef
}

type debRef struct {
	url  string
	size int64
}

// ImportResult says what Import did with a file.
type ImportResult int

// Import results.
const (
	Imported    ImportResult = iota + 1 // added to the cache
	AlreadyHeld                         // the cache held it already
)

// NewImporter reads the held trusted roots and the Packages indices they
// list (and the store holds).
func NewImporter(st *store.Store) (*Importer, error) {
	roots, err := st.Roots()
	if err != nil {
		return nil, fmt.Errorf("reading the repositories of the cache: %w", err)
	}
	im := &Importer{st: st, listed: map[store.Digest]debRef{}}
	for _, rt := range roots {
		if rt.Untrusted {
			continue
		}
		rel, err := heldRelease(st, rt)
		if err != nil {
			return nil, err
		}
		archive := archiveRoot(rt.Repo)
		parsed := map[string]bool{} // Packages files parsed, by name without compression
		for p, sum := range rel.Files {
			kind, ok := apt.IsIndexPath(p)
			plain := decompress.TrimExt(p)
			if !ok || kind != apt.IndexPackages || parsed[plain] || len(sum.SHA256) != 32 {
				continue
			}
			d := store.Digest(sum.SHA256)
			if !st.HasBlob(d) {
				continue
			}
			if err := readPackages(st, d, p, func(pk *apt.Package) {
				im.listed[store.Digest(pk.SHA256)] = debRef{url: target.JoinURL(archive, pk.Filename), size: pk.Size}
			}); err != nil {
				return nil, fmt.Errorf("%s/%s: %w", rt.Repo, p, err)
			}
			parsed[plain] = true
		}
	}
	return im, nil
}

// Len is how many packages the held roots vouch for.
func (im *Importer) Len() int { return len(im.listed) }

// Import hashes the file at p and adds it when a verified root vouches for
// its digest and size. progress, if set, is called with byte counts read.
func (im *Importer) Import(p string, progress func(n int64)) (ImportResult, int64, error) {
	if strings.HasSuffix(p, ".rpm") {
		return 0, 0, fmt.Errorf("importing .rpm files is not supported yet (their proof is the rpm signature, checked when fetched through pkgswarm)")
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if progress != nil {
		progress(n)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading: %w", err)
	}
	d := store.Digest(h.Sum(nil))
	ref, ok := im.listed[d]
	if !ok {
		return 0, 0, fmt.Errorf("no verified root lists sha256 %s: the file was altered, or its repository is unknown to pkgswarm (run apt-get update through it) or has moved on to a newer version", d)
	}
	if ref.size >= 0 && ref.size != n {
		return 0, 0, fmt.Errorf("%s lists %d bytes, the file has %d", ref.url, ref.size, n)
	}
	if im.st.HasBlob(d) {
		return AlreadyHeld, n, im.st.MarkShareable(d)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	w, err := im.st.NewWriter()
	if err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(w, f); err != nil {
		w.Abort(err)
		return 0, 0, fmt.Errorf("copying into the cache: %w", err)
	}
	if err := w.Commit(d); err != nil {
		return 0, 0, fmt.Errorf("the file changed while it was imported: %w", err)
	}
	if err := im.st.MarkShareable(d); err != nil {
		return 0, 0, fmt.Errorf("marking %s shareable: %w", d, err)
	}
	return Imported, n, nil
}

// heldRelease parses the root of rt as the cache holds it: the signed text of
// an InRelease, or a Release whose detached signature was checked when it
// was accepted (blobs are content-addressed: these are the bytes verified).
func heldRelease(st *store.Store, rt store.RootRecord) (*apt.Release, error) {
	f, _, err := st.OpenBlob(rt.Digest)
	if err != nil {
		return nil, fmt.Errorf("the root of %s (%s) is not in the cache: %w; run apt-get update through pkgswarm", rt.Repo, rt.URL, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxRootSize))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the root of %s: %w", rt.Repo, err)
	}
	rel, err := apt.ParseRoot(data)
	if err != nil {
		return nil, fmt.Errorf("the root of %s (%s): %w", rt.Repo, rt.URL, err)
	}
	return rel, nil
}

// readPackages calls fn for each package of the Packages index held as blob
// d (named name, whose extension gives the compression).
func readPackages(st *store.Store, d store.Digest, name string, fn func(*apt.Package)) error {
	f, _, err := st.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := decompress.NewReaderLimit(path.Base(name), f, maxIndexSize)
	if err != nil {
		return err
	}
	defer rc.Close()
	return apt.ParsePackages(rc, func(p *apt.Package) error { fn(p); return nil })
}
