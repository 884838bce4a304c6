package target

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

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
}

// Errors returned by Parse; the server maps them to 400 and 403.
var (
	ErrBadTarget  = errors.New("not a proxy request")
	ErrNotAllowed = errors.New("not a repository file")
)

// Parse resolves a request URI (absolute "http://host/path" as sent to a
// forward proxy, or prefix form "/host/path", "/https/host/path") into a
// Target.
func Parse(requestURI string) (Target, error) {
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
		for _, sch := range []string{"https", "http"} {
			if after, ok := strings.CutPrefix(rest, sch+":/"); ok {
				// "/https://host/path": the URL pasted whole after the
				// node's address. Say how the prefix is written.
				host, _, _ := strings.Cut(strings.TrimPrefix(after, "/"), "/")
				if host == "" {
					host = "HOST"
				}
				form := "/" + host + "/..."
				if sch == "https" {
					form = "/https/" + host + "/..."
				}
				return Target{}, fmt.Errorf("%w: %q: write the prefix as %s, not /%s://%s/...", ErrBadTarget, requestURI, form, sch, host)
			}
		}
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

// Dir is the URL of the directory holding t.
func (t Target) Dir() string { return URLDir(t.URL) }

// URLFor is the canonical URL of path p on t's origin, in the form ParseTarget
// gives (so that it keys the same cache entries).
func (t Target) URLFor(p string) string {
	return t.Scheme + "://" + t.Host + (&url.URL{Path: p}).EscapedPath()
}

// URLDir is the URL of the directory holding u (path.Dir would fold the
// scheme's "//").
func URLDir(u string) string { return u[:strings.LastIndex(u, "/")] }

// JoinURL appends a relative slash path to a canonical directory URL.
func JoinURL(dir, rel string) string {
	return dir + (&url.URL{Path: "/" + rel}).EscapedPath()
}
