package trust

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/proxy/target"
	"github.com/pkgswarm/pkgswarm/repoindex/apt"
	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// A client whose apt lists are already current (updated before the node
// existed, or through pdiffs) asks for .debs without ever fetching, through
// the node, the Packages index that lists them. The node would then stream
// every such file unverified and keep none. Instead it fetches the index
// itself — the one its accepted root lists for the file's component and
// architecture, verified against the root like any index, from peers or the
// origin — parses it, and resolves the file by digest.

// fetchListingIndex fetches and parses the Packages indices that trusted
// roots of t's archive list for t's component and architecture, and
// reports whether it started or waited for any. It waits for the parses.
func (r *Resolver) fetchListingIndex(ctx context.Context, t target.Target) bool {
	component, arch, ok := poolPlace(t.Path)
	if !ok {
		return false
	}
	roots, err := r.st.Roots()
	if err != nil {
		return false
	}
	started := false
	for _, rt := range roots {
		archive := archiveRoot(rt.Repo)
		if rt.Untrusted || !strings.HasPrefix(t.URL, archive+"/") {
			continue
		}
		// Once per root, component and architecture: after that the index is
		// held and parsed, and a file it does not list is not in it.
		once := rt.Digest.String() + "|" + component + "|" + arch
		if _, done := r.indexTried.LoadOrStore(once, struct{}{}); done {
			continue
		}
		rel, err := heldRelease(r.st, rt)
		if err != nil {
			continue
		}
		p, fs, ok := packagesIndex(rel, component, arch)
		if !ok {
			continue
		}
		u := target.JoinURL(rt.Repo, p)
		e := store.Expect{SHA256: store.Digest(fs.SHA256), Size: fs.Size, Root: rt.Repo}
		if _, err := r.st.GetMeta(aptIndexKey(e.SHA256)); err != nil {
			continue // not registered for parsing: not an index of an accepted root
		}
		req := r.teaches(archive, r.signedRequest(u, &e, r.learnAptIndex))
		res, err := r.fetch.Get(ctx, req)
		if err != nil {
			continue
		}
		started = true
		if res.Flight != nil {
			select {
			case <-res.Flight.Done():
			case <-ctx.Done():
				return started
			}
		}
	}
	if started {
		r.waitParses(ctx, t.URL)
	}
	return started
}

// poolPlace reads the component and architecture of a Debian pool path
// ".../pool/<component>/<prefix>/<source>/<name>_<version>_<arch>.deb".
func poolPlace(p string) (component, arch string, ok bool) {
	_, rest, found := strings.Cut(p, "/pool/")
	if !found {
		return "", "", false
	}
	component, _, found = strings.Cut(rest, "/")
	if !found || component == "" {
		return "", "", false
	}
	base := path.Base(p)
	ext := path.Ext(base)
	if ext != ".deb" && ext != ".udeb" {
		return "", "", false
	}
	i := strings.LastIndexByte(base, '_')
	if i < 0 {
		return "", "", false
	}
	return component, strings.TrimSuffix(base[i+1:], ext), true
}

// packagesIndex chooses, among the files rel lists, the Packages index of
// component for arch ("all": the first architecture rel lists), the
// smallest compressed variant first.
func packagesIndex(rel *apt.Release, component, arch string) (string, apt.FileSum, bool) {
	arches := []string{arch}
	if arch == "all" {
		arches = slices.DeleteFunc(slices.Clone(rel.Architectures), func(a string) bool { return a == "all" || a == "source" })
	}
	for _, a := range arches {
		base := component + "/binary-" + a + "/Packages"
		for _, ext := range []string{decompress.ExtXz, decompress.ExtGzip, decompress.ExtZstd, decompress.ExtBzip2, ""} {
			if fs, ok := rel.Files[base+ext]; ok && len(fs.SHA256) == 32 {
				return base + ext, fs, true
			}
		}
	}
	return "", apt.FileSum{}, false
}
