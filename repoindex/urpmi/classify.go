package urpmi

import (
	"path"
	"strings"
)

// Kind is what an urpmi path is.
type Kind int

// Kinds of urpmi file. The volatile ones change in place when a medium is
// regenerated; the immutable ones never change once published.
const (
	KindUnknown      Kind = iota
	KindMediaCfg          // media/media_info/media.cfg
	KindMD5SUM            // <medium>/media_info/MD5SUM
	KindSynthesis         // <medium>/media_info/synthesis.hdlist*.cz
	KindHdlist            // <medium>/media_info/hdlist*.cz
	KindXMLInfo           // <medium>/media_info/{info,files,changelog}.xml.lzma
	KindPubkey            // media_info/pubkey*
	KindDescriptions      // media_info/descriptions
	KindMirrorList        // *.list mirror lists
	KindRPM               // *.rpm
	KindVersioned         // media_info/YYYYMMDD-HHMMSS-<name>
)

var kindNames = [...]string{"unknown", "media.cfg", "MD5SUM", "synthesis", "hdlist", "xml-info",
	"pubkey", "descriptions", "mirror-list", "rpm", "versioned"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "invalid"
	}
	return kindNames[k]
}

// Immutable reports whether files of this kind never change once published
// (rpms, versioned media_info copies). The rest is volatile: revalidate it
// with the origin, never take it from peers.
func (k Kind) Immutable() bool { return k == KindRPM || k == KindVersioned }

// Classify says what kind of urpmi file a URL path names. ok is false for
// paths that are not urpmi metadata or packages. Metadata file names count
// only inside a media_info directory; .rpm and .list anywhere.
func Classify(p string) (k Kind, ok bool) {
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, ".rpm") && len(base) > len(".rpm"):
		return KindRPM, true
	case strings.HasSuffix(base, ".list") && len(base) > len(".list"):
		return KindMirrorList, true
	}
	if path.Base(path.Dir(p)) != "media_info" {
		return KindUnknown, false
	}
	switch {
	case isVersioned(base):
		return KindVersioned, true
	case base == "media.cfg":
		return KindMediaCfg, true
	case base == "MD5SUM":
		return KindMD5SUM, true
	case strings.HasPrefix(base, "synthesis.hdlist"):
		return KindSynthesis, true
	case strings.HasPrefix(base, "hdlist") && strings.Contains(base, ".cz"):
		return KindHdlist, true
	case base == "pubkey" || strings.HasPrefix(base, "pubkey_"):
		return KindPubkey, true
	case base == "descriptions":
		return KindDescriptions, true
	case isXMLInfo(base):
		return KindXMLInfo, true
	}
	return KindUnknown, false
}

// isVersioned matches YYYYMMDD-HHMMSS-<name>, the immutable copies
// genhdlist2 --versioned writes next to the current files.
func isVersioned(b string) bool {
	if len(b) < 17 || b[8] != '-' || b[15] != '-' {
		return false
	}
	for i, c := range b[:15] {
		if i == 8 {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isXMLInfo(b string) bool {
	for _, n := range []string{"info", "files", "changelog"} {
		if strings.HasPrefix(b, n+".xml") {
			return true
		}
	}
	return false
}

// MediumDir returns the medium directory a path belongs to: the directory
// of an rpm, the parent of a medium's media_info/ or repodata/ directory.
// Paths in the global media/media_info/ and paths of no medium give ok
// false. The result keeps p's form (leading slash or host prefix).
func MediumDir(p string) (dir string, ok bool) {
	p = strings.TrimSuffix(p, "/")
	dir = path.Dir(p)
	if dir == "." || dir == "/" {
		return "", false
	}
	switch path.Base(dir) {
	case "media_info", "repodata":
		parent := path.Dir(dir)
		if parent == "." || parent == "/" || (path.Base(dir) == "media_info" && path.Base(parent) == "media") {
			return "", false
		}
		return parent, true
	}
	if k, ok := Classify(p); ok && k == KindRPM {
		return dir, true
	}
	return "", false
}
