package trust

import (
	"path"
	"regexp"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex/urpmi"
)

// Format names the repository format whose chain vouches for a file.
type Format string

// Formats. A file belongs to exactly one; its expectations are kept in that
// format's own namespace, so no chain can replace another's.
const (
	FormatApt   Format = "apt"
	FormatURPMI Format = "urpmi"
	FormatRPMMD Format = "rpm-md"
)

// kind is what a path is within its format.
type kind int

const (
	kindAptRoot        kind = iota + 1 // InRelease, Release, Release.gpg
	kindAptIndex                       // Packages*, Sources*, Translation-*, by-hash/... under dists/
	kindAptPackage                     // .deb, .udeb, .ddeb, .dsc, source tarballs
	kindURPMIMD5SUM                    // <medium>/media_info/MD5SUM
	kindURPMIPubkey                    // <medium>/media_info/pubkey
	kindURPMIMediaInfo                 // other files of a medium's media_info/
	kindURPMIOther                     // media.cfg, the global media_info/, mirror lists: by URL
	kindRPM                            // *.rpm, *.drpm (urpmi medium or rpm-md repository)
	kindRPMMDRepomd                    // repodata/repomd.xml, repomd.xml.asc
	kindRPMMDRepodata                  // other data files of repodata/
	kindRPMMDKey                       // repodata/repomd.xml.key: by URL
)

// class is a classified path.
type class struct {
	format Format
	kind   kind
}

// aptIndexPrefixes are the index file names apt fetches under dists/.
var aptIndexPrefixes = []string{
	"Packages", "Sources", "Translation-", "Contents-", "Components-", "Commands-",
	"icons-", "Index",
}

var (
	// byHashPath is apt's by-hash name: by-hash/<algorithm>/<hex digest>.
	byHashPath = regexp.MustCompile(`/by-hash/(MD5Sum|SHA1|SHA256|SHA512)/[0-9a-f]{32,128}$`)
	// repodataName is an rpm-md data file: [<checksum>-]<type>.<format>[.<compression>].
	repodataName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*\.(xml|yaml|sqlite|solv|zck|productid)(\.(gz|xz|bz2|zst|zck|lzma))?$|^[A-Za-z0-9._+-]*productid(\.gz)?$`)
	// sourceFile is a Debian source package file other than the .dsc.
	sourceFile = regexp.MustCompile(`\.(orig(-[A-Za-z0-9-]+)?\.tar|debian\.tar|tar)\.(gz|xz|bz2|lzma|zst)(\.asc)?$|\.diff\.gz$`)
)

// classify says which format a clean URL path belongs to and what it is.
// ok is false for paths that are not a repository file of any format (the
// front answers 403: pkgswarm is not an open proxy). Each format's rules
// are strict: a name that merely ends like a repository file in the wrong
// place is refused.
func classify(p string) (class, bool) {
	base := path.Base(p)
	dir := path.Dir(p)
	switch base {
	case "InRelease", "Release", "Release.gpg":
		// Also at the top of flat repositories ("deb URL ./"). A Release of
		// a component (main/binary-amd64/Release) is an index its root lists.
		if d := path.Base(dir); strings.HasPrefix(d, "binary-") || d == "source" || d == "i18n" {
			return class{FormatApt, kindAptIndex}, true
		}
		return class{FormatApt, kindAptRoot}, true
	}
	if i := strings.Index(p, "/dists/"); i >= 0 {
		if strings.Contains(p, "/by-hash/") {
			if byHashPath.MatchString(p) {
				return class{FormatApt, kindAptIndex}, true
			}
			return class{}, false
		}
		for _, pre := range aptIndexPrefixes {
			if strings.HasPrefix(base, pre) {
				return class{FormatApt, kindAptIndex}, true
			}
		}
	}
	switch path.Ext(base) {
	case ".deb", ".udeb", ".ddeb", ".dsc":
		return class{FormatApt, kindAptPackage}, true
	case ".rpm", ".drpm":
		if len(base) > len(".rpm") {
			return class{"", kindRPM}, true
		}
		return class{}, false
	}
	if sourceFile.MatchString(base) {
		return class{FormatApt, kindAptPackage}, true
	}
	if path.Base(dir) == "repodata" && path.Dir(dir) != "/" {
		switch {
		case base == "repomd.xml" || base == "repomd.xml.asc":
			return class{FormatRPMMD, kindRPMMDRepomd}, true
		case base == "repomd.xml.key":
			return class{FormatRPMMD, kindRPMMDKey}, true
		case repodataName.MatchString(base):
			return class{FormatRPMMD, kindRPMMDRepodata}, true
		}
		return class{}, false
	}
	if k, ok := urpmi.Classify(p); ok {
		switch k {
		case urpmi.KindMediaCfg, urpmi.KindMirrorList:
			return class{FormatURPMI, kindURPMIOther}, true
		}
		if _, inMedium := urpmi.MediumDir(p); !inMedium {
			return class{FormatURPMI, kindURPMIOther}, true // the global media/media_info/
		}
		switch {
		case k == urpmi.KindMD5SUM:
			return class{FormatURPMI, kindURPMIMD5SUM}, true
		case k == urpmi.KindPubkey && base == "pubkey":
			return class{FormatURPMI, kindURPMIPubkey}, true
		case k == urpmi.KindPubkey:
			return class{FormatURPMI, kindURPMIOther}, true
		}
		return class{FormatURPMI, kindURPMIMediaInfo}, true
	}
	return class{}, false
}
