package apt

import (
	"path"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex/decompress"
)

// IndexKind says what an index file under dists/<suite>/ holds.
type IndexKind int

const (
	IndexPackages    IndexKind = iota + 1 // binary package index (also debian-installer's)
	IndexSources                          // source package index
	IndexTranslation                      // i18n/Translation-<lang>
	IndexContents                         // Contents-<arch>, Contents-udeb-<arch>
	IndexByHash                           // <dir>/by-hash/SHA256/<hex>: kind known only from the Release
	IndexOther                            // anything else a Release lists: component Release files, pdiffs, dep11, i18n/Index, ...
)

func (k IndexKind) String() string {
	switch k {
	case IndexPackages:
		return "Packages"
	case IndexSources:
		return "Sources"
	case IndexTranslation:
		return "Translation"
	case IndexContents:
		return "Contents"
	case IndexByHash:
		return "by-hash"
	case IndexOther:
		return "other"
	}
	return "invalid"
}

// IsIndexPath classifies p, a path relative to dists/<suite>/ (a flat
// repository's directory for flat repositories), by its base name with any
// compression extension stripped. ok is false for paths that cannot be an
// index file: empty, absolute, with a ".." segment, or one of the signed
// roots (InRelease, Release, Release.gpg) at the top.
func IsIndexPath(p string) (kind IndexKind, ok bool) {
	c, err := cleanRelPath(p)
	if err != nil {
		return 0, false
	}
	switch c {
	case "InRelease", "Release", "Release.gpg":
		return 0, false
	}
	if _, _, ok := splitByHash(c); ok {
		return IndexByHash, true
	}
	base := decompress.TrimExt(path.Base(c))
	if strings.HasSuffix(path.Dir(c), ".diff") {
		return IndexOther, true // pdiff Index and patches
	}
	switch {
	case base == "Packages":
		return IndexPackages, true
	case base == "Sources":
		return IndexSources, true
	case strings.HasPrefix(base, "Translation-"):
		return IndexTranslation, true
	case strings.HasPrefix(base, "Contents-"):
		return IndexContents, true
	}
	return IndexOther, true
}
