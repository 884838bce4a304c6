package origin

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// ParseMirrors parses "PREFIX=ALT[,ALT...]" entries (the --mirror flag) into
// the map Config.Mirrors takes. Every prefix is canonicalised as the front
// canonicalises request URLs, so that it matches the URLs the pipeline is
// asked for: scheme http or https, lower-case host without a trailing dot,
// the port only when it is not the scheme's default, a clean path without a
// trailing slash, no credentials, query or fragment. Entries for the same
// prefix add alternatives in order.
func ParseMirrors(list []string) (map[string][]string, error) {
	m := map[string][]string{}
	for _, e := range list {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("mirror %q: want PREFIX=ALT[,ALT...], e.g. http://deb.example.org/debian=https://mirror.example.net/debian", e)
		}
		prefix, err := CanonicalPrefix(k)
		if err != nil {
			return nil, fmt.Errorf("mirror %q: %v", e, err)
		}
		for _, alt := range strings.Split(v, ",") {
			a, err := CanonicalPrefix(strings.TrimSpace(alt))
			if err != nil {
				return nil, fmt.Errorf("mirror %q: %v", e, err)
			}
			m[prefix] = append(m[prefix], a)
		}
	}
	return m, nil
}

// CanonicalPrefix returns the canonical form of a URL prefix (see
// ParseMirrors), e.g. "HTTP://Deb.Example.org:80/debian/" →
// "http://deb.example.org/debian".
func CanonicalPrefix(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	if u.User != nil {
		return "", fmt.Errorf("%q has credentials; pkgswarm does not send them to origins", s)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q has a query or fragment; a prefix is a scheme, a host and a path", s)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" || !validHost(host) {
		return "", fmt.Errorf("%q: bad host %q", s, u.Host)
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	def := port
	if p := u.Port(); p != "" {
		if port, err = parsePort(p); err != nil {
			return "", fmt.Errorf("%q: %v", s, err)
		}
	}
	hostport := host
	if port != def {
		hostport = net.JoinHostPort(host, strconv.Itoa(port))
	} else if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	p := u.Path // decoded
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%q has a '..' segment", s)
		}
	}
	clean := strings.TrimSuffix(path.Clean("/"+p), "/")
	return u.Scheme + "://" + hostport + (&url.URL{Path: clean}).EscapedPath(), nil
}

// validHost accepts an IP address, "localhost", or a dotted name of letters,
// digits, '-' and '_'.
func validHost(h string) bool {
	if ip := net.ParseIP(h); ip != nil {
		return true
	}
	if len(h) > 253 || !strings.Contains(h, ".") && h != "localhost" {
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
