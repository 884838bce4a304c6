package origin

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/pkgswarm/pkgswarm/proxy/target"
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
// "http://deb.example.org/debian": the form target.Parse gives request URLs.
func CanonicalPrefix(s string) (string, error) {
	s = strings.TrimRight(s, "/")
	if !strings.HasPrefix(strings.ToLower(s), "http://") && !strings.HasPrefix(strings.ToLower(s), "https://") {
		return "", fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	if u, err := url.Parse(s); err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q is not a prefix: a prefix is a scheme, a host and a path (no query or fragment)", s)
	}
	// Canonicalise a dummy file under the prefix as any request is.
	t, err := target.Parse(s + "/x")
	if err != nil {
		return "", fmt.Errorf("%q: %v", s, err)
	}
	if _, err := parsePort(strconv.Itoa(t.Port)); err != nil {
		return "", fmt.Errorf("%q: %v", s, err)
	}
	return strings.TrimSuffix(t.URL, "/x"), nil
}
