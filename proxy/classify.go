package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Kind says how pkgswarm treats a repository path (DESIGN.md, "Three kinds of
// file").
type Kind int

const (
	// KindOther is a repository-shaped file no signed root can vouch for on
	// its own (e.g. an apt file outside dists/): cached by URL, revalidated,
	// never fetched from peers unless a verified root lists its digest.
	KindOther Kind = iota
	// KindRoot is a signed root: apt InRelease, Release, Release.gpg.
	KindRoot
	// KindIndex is an apt index listed by a root (Packages, Sources,
	// Translation, Contents, by-hash ...).
	KindIndex
	// KindPackage is a package or source file listed by an index (.deb,
	// .udeb, .dsc, source tarballs): immutable per digest.
	KindPackage
	// KindVolatile is unsigned metadata that changes in place (urpmi MD5SUM,
	// media.cfg, synthesis; rpm-md repomd.xml): cached by URL and revalidated
	// on every request.
	KindVolatile
	// KindImmutable is a file whose name changes when its content does
	// (.rpm, versioned urpmi files, rpm-md repodata/<sum>-*.xml.gz).
	KindImmutable
)

var kindNames = [...]string{"other", "root", "index", "package", "volatile", "immutable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Target is a client request resolved to the canonical origin URL that keys
// the cache. The same file reached in forward-proxy or prefix form has the
// same Target.
type Target struct {
	// URL is canonical: scheme http or https, lower-case host, port only
	// when not the scheme's default, a clean absolute path, no query.
	URL string
	// Scheme, Host (with port when non-default), Port and Path are URL's
	// parts.
	Scheme, Host string
	Port         int
	Path         string
	Kind         Kind
}

// Errors returned by ParseTarget; the server maps them to 400 and 403.
var (
	ErrBadTarget  = errors.New("not a proxy request")
	ErrNotAllowed = errors.New("not a repository file")
)

// ParseTarget resolves a request URI (absolute "http://host/path" as sent to a
// forward proxy, or prefix form "/host/path", "/https/host/path") into a
// Target. It refuses what is not a repository-shaped file.
func ParseTarget(requestURI string) (Target, error) {
	if requestURI == "" {
		return Target{}, fmt.Errorf("%w: empty request URI", ErrBadTarget)
	}
	if strings.ContainsAny(requestURI, "\x00\r\n") {
		return Target{}, fmt.Errorf("%w: control character in %q", ErrBadTarget, requestURI)
	}
	var scheme, hostport, p string
	switch {
	case strings.HasPrefix(requestURI, "/"):
		rest := strings.TrimPrefix(requestURI, "/")
		scheme = "http"
		if r, ok := strings.CutPrefix(rest, "https/"); ok {
			scheme, rest = "https", r
		} else if r, ok := strings.CutPrefix(rest, "http/"); ok {
			rest = r
		}
		hostport, p, _ = strings.Cut(rest, "/")
		p = "/" + p
	default:
		u, err := url.Parse(requestURI)
		if err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrBadTarget, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return Target{}, fmt.Errorf("%w: scheme %q (only http and https origins)", ErrBadTarget, u.Scheme)
		}
		if u.User != nil {
			return Target{}, fmt.Errorf("%w: credentials in URL", ErrBadTarget)
		}
		scheme, hostport, p = u.Scheme, u.Host, u.EscapedPath()
		if u.RawQuery != "" || u.Fragment != "" {
			return Target{}, fmt.Errorf("%w: query strings are not cached (%s)", ErrNotAllowed, requestURI)
		}
	}
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return Target{}, fmt.Errorf("%w: query strings are not cached (%s)", ErrNotAllowed, requestURI)
	}
	host, port, err := splitHostPort(scheme, hostport)
	if err != nil {
		return Target{}, err
	}
	up, err := url.PathUnescape(p)
	if err != nil {
		return Target{}, fmt.Errorf("%w: path %q: %v", ErrBadTarget, p, err)
	}
	clean, err := cleanPath(up)
	if err != nil {
		return Target{}, err
	}
	t := Target{Scheme: scheme, Host: host, Port: port, Path: clean}
	if (scheme == "http" && port != 80) || (scheme == "https" && port != 443) {
		t.Host = net.JoinHostPort(host, strconv.Itoa(port))
	} else if strings.Contains(host, ":") {
		t.Host = "[" + host + "]"
	}
	t.URL = scheme + "://" + t.Host + (&url.URL{Path: clean}).EscapedPath()
	kind, ok := Classify(clean)
	if !ok {
		return t, fmt.Errorf("%w: %s (pkgswarm fetches package, index and metadata files only)", ErrNotAllowed, t.URL)
	}
	t.Kind = kind
	return t, nil
}

func splitHostPort(scheme, hostport string) (string, int, error) {
	if hostport == "" {
		return "", 0, fmt.Errorf("%w: no host", ErrBadTarget)
	}
	host, portStr := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, portStr = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" || !validHost(host) {
		return "", 0, fmt.Errorf("%w: bad host %q", ErrBadTarget, hostport)
	}
	port := 80
	if scheme == "https" {
		port = 443
	}
	if portStr != "" {
		n, err := strconv.Atoi(portStr)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("%w: bad port %q", ErrBadTarget, portStr)
		}
		port = n
	}
	return host, port, nil
}

func validHost(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return true
	}
	if len(h) > 253 || !strings.Contains(h, ".") && h != "localhost" {
		// A prefix-mode first segment without a dot is almost always a
		// mistyped path ("/debian/dists/..."), not a host.
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// cleanPath refuses ".." segments outright (rather than resolving them) so a
// request can never name a file outside the path it appears to name.
func cleanPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: %q has a '..' segment", ErrBadTarget, p)
		}
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("%w: %q names no file", ErrNotAllowed, p)
	}
	return c, nil
}

// Classify says how a repository path is treated, and whether it is a
// repository file at all (the false case is apt-cacher-ng's 403).
func Classify(p string) (Kind, bool) {
	base := path.Base(p)
	dir := path.Dir(p)
	switch base {
	case "InRelease", "Release", "Release.gpg":
		// Also at the top of flat repositories ("deb URL ./").
		return KindRoot, true
	}
	if strings.Contains(p, "/by-hash/") {
		return KindIndex, true
	}
	if strings.Contains(p, "/dists/") {
		for _, pre := range aptIndexPrefixes {
			if strings.HasPrefix(base, pre) {
				return KindIndex, true
			}
		}
	}
	// urpmi media metadata (media_info/ and media.cfg).
	if path.Base(dir) == "media_info" {
		if versionedName(base) {
			return KindImmutable, true
		}
		return KindVolatile, true
	}
	// rpm-md.
	if path.Base(dir) == "repodata" {
		if base == "repomd.xml" || base == "repomd.xml.asc" || base == "repomd.xml.key" {
			return KindVolatile, true
		}
		return KindImmutable, true
	}
	ext := path.Ext(base)
	switch ext {
	case ".deb", ".udeb", ".ddeb", ".dsc":
		return KindPackage, true
	case ".rpm", ".drpm":
		return KindImmutable, true
	case ".gz", ".xz", ".bz2", ".lzma", ".zst":
		if strings.Contains(base, ".orig") || strings.Contains(base, ".debian.tar") || strings.Contains(base, ".diff.") || strings.Contains(base, ".tar.") {
			return KindPackage, true
		}
	case ".asc":
		if strings.Contains(base, ".orig") || strings.Contains(base, ".tar.") {
			return KindPackage, true
		}
	case ".list":
		// urpmi mirror lists (e.g. api mirror .list files).
		return KindVolatile, true
	}
	if strings.Contains(p, "/dists/") && (strings.HasSuffix(base, ".gpg") || base == "Index" || strings.HasSuffix(p, "/i18n/Index")) {
		return KindIndex, true
	}
	return KindOther, false
}

var aptIndexPrefixes = []string{
	"Packages", "Sources", "Translation-", "Contents-", "Components-", "Commands-",
	"icons-", "Index", "Release", "by-hash",
}

// versionedName reports urpmi's immutable "YYYYMMDD-HHMMSS-<name>" files.
func versionedName(base string) bool {
	if len(base) < 17 || base[8] != '-' || base[15] != '-' {
		return false
	}
	for i, c := range base[:15] {
		if i == 8 {
			continue
		}
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// aptRepo splits an apt path under dists/ into the repository (the
// dists/<suite> directory URL, which keys the root) and the path relative to
// it. ok is false when p is not under a dists/<suite>/ directory.
func aptRepo(u string) (repo, rel string, ok bool) {
	i := strings.Index(u, "/dists/")
	if i < 0 {
		return "", "", false
	}
	rest := u[i+len("/dists/"):]
	suite, rel, found := strings.Cut(rest, "/")
	if !found || suite == "" || rel == "" {
		return "", "", false
	}
	return u[:i] + "/dists/" + suite, rel, true
}

// archiveRoot is the directory holding dists/ and pool/, which Packages
// Filename fields are relative to.
func archiveRoot(repo string) string {
	i := strings.LastIndex(repo, "/dists/")
	if i < 0 {
		return repo
	}
	return repo[:i]
}

// urlDir is the URL of the directory holding u (path.Dir would fold the
// scheme's "//").
func urlDir(u string) string { return u[:strings.LastIndex(u, "/")] }
