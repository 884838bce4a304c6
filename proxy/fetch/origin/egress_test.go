package origin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	own := func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8::77")}, nil
	}
	type want map[string]string // address → reason ("" allowed)
	common := want{
		"0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified", "::ffff:0.0.0.0": "unspecified",
		"224.0.0.251": "multicast", "ff02::1": "multicast", "ff0e::1": "multicast", "::ffff:239.1.2.3": "multicast",
		"255.255.255.255": "broadcast",
		"203.0.113.5":     "", "2001:db8::1": "", "8.8.8.8": "",
	}
	tests := []struct {
		name string
		eg   Egress
		want want
	}{
		{name: "default", want: want{
			"127.0.0.1": "loopback", "127.0.0.2": "loopback", "127.255.255.254": "loopback", "::1": "loopback",
			"::ffff:127.0.0.2": "loopback", "::ffff:7f00:2": "loopback",
			"192.0.2.77": "one of this node's own addresses", "::ffff:192.0.2.77": "one of this node's own addresses",
			"2001:db8::77":    "one of this node's own addresses",
			"169.254.169.254": "link-local", "fe80::1": "link-local", "fe80::1%eth0": "link-local", "::ffff:169.254.1.1": "link-local",
			"10.1.2.3": "", "172.16.0.1": "", "192.168.1.1": "", "fd00::1": "",
		}},
		{name: "allow loopback", eg: Egress{AllowLoopback: true}, want: want{
			"127.0.0.2": "", "::1": "", "::ffff:127.0.0.2": "", "192.0.2.77": "", "2001:db8::77": "",
			"169.254.169.254": "link-local",
		}},
		{name: "allow link-local", eg: Egress{AllowLinkLocal: true}, want: want{
			"169.254.169.254": "", "fe80::1": "", "127.0.0.2": "loopback",
		}},
		{name: "deny private", eg: Egress{DenyPrivate: true}, want: want{
			"10.1.2.3": "private", "172.16.0.1": "private", "192.168.1.1": "private", "fd00::1": "private",
			"::ffff:10.1.2.3": "private", "100.64.0.1": "",
		}},
		{name: "deny list", eg: Egress{Deny: []netip.Prefix{netip.MustParsePrefix("203.0.113.9/24")}}, want: want{
			"203.0.113.5": "in 203.0.113.0/24", "::ffff:203.0.113.5": "in 203.0.113.0/24", "198.51.100.1": "",
		}},
	}
	for _, tt := range tests {
		eg := tt.eg
		eg.LocalAddrs = own
		p, err := newPolicy(eg, []int{80}, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		for addr, reason := range common {
			if _, ok := tt.want[addr]; !ok {
				tt.want[addr] = reason
			}
		}
		for addr, reason := range tt.want {
			got, _ := p.classify(netip.MustParseAddr(addr))
			if got != reason {
				t.Errorf("%s: classify(%s) = %q, want %q", tt.name, addr, got, reason)
			}
		}
	}
}

func TestParsePort(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int{"80": 80, "443": 443, "1": 1, "65535": 65535,
		"0080": 0, "080": 0, "0": 0, "65536": 0, "99999": 0, "100000": 0, "": 0, "+80": 0, "-1": 0, "8 0": 0, "8a": 0, "٨٠": 0} {
		got, err := parsePort(s)
		if want == 0 && err == nil || want != 0 && (err != nil || got != want) {
			t.Errorf("parsePort(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}

// victim is a service that listens only on loopback port 80 (issue 11, item
// 12) and must never be reached through pkgswarm with the default policy.
func victim(t *testing.T) (*server, netip.Addr) {
	ln, addr := listenPort80(t)
	srv := newServer(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	}))
	return srv, addr
}

// checkRefused asserts that err is a policy refusal wrapping sentinel, names
// u, says what to change (hint), and is neither "unavailable" (no held copy
// is served for it) nor "not found".
func checkRefused(t *testing.T, err error, u string, sentinel error, hint string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: fetched, want a refusal", u)
		return
	case !errors.Is(err, sentinel) || !IsForbidden(err):
		t.Errorf("%s: %v; want a *ForbiddenError wrapping %v", u, err, sentinel)
	case fetch.IsUnavailable(err) || fetch.IsNotFound(err):
		t.Errorf("%s: %v counts as unavailable or not found; it is a refusal", u, err)
	}
	if !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), hint) {
		t.Errorf("%s: error %q should name the URL and say %q", u, err, hint)
	}
}

// With the default policy, a service on loopback port 80 is refused in every
// form that reached it before (issue 11, item 12), before any connection is
// made; the setting re-allows it, except a port with leading zeros.
func TestSSRFLoopbackRefused(t *testing.T) {
	t.Parallel()
	srv, addr := victim(t)
	a := addr.String()
	res := hosts(map[string][]string{"repo.test": {a}, "both.test": {"::1", a}})
	tests := []struct {
		name     string
		url      string
		sentinel error
		hint     string
		allowed  bool // fetched with AllowLoopback
	}{
		{"plain", "http://" + a + "/x/by-hash/y", ErrForbiddenAddress, "address " + a + " is loopback; pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-loopback)", true},
		{"list file", "http://" + a + "/etc/apt/sources.list", ErrForbiddenAddress, "--allow-origin-loopback", true},
		{"ipv4-mapped", "http://[::ffff:" + a + "]/debian/dists/stable/InRelease", ErrForbiddenAddress, "address " + a + " is loopback", true},
		{"ipv4-mapped hex", "http://[::ffff:7f00:" + strconv.FormatUint(uint64(addr.As4()[2])<<8|uint64(addr.As4()[3]), 16) + "]/x/media_info/MD5SUM", ErrForbiddenAddress, "is loopback", true},
		{"port 0080", "http://" + a + ":0080/pool/main/h/hello.deb", ErrForbiddenPort, "leading zeros", false},
		{"mapped and 0080", "http://[::ffff:" + a + "]:0080/x/repodata/repomd.xml", ErrForbiddenPort, "leading zeros", false},
		{"name", "http://repo.test/pool/main/h/hello.deb", ErrForbiddenAddress, "repo.test resolves to " + a + ", which is loopback; pkgswarm refuses", true},
		{"name with two loopback addresses", "http://both.test/x/repodata/primary.xml.gz", ErrForbiddenAddress, "which is loopback", true},
		{"ipv6 loopback", "http://[::1]/x/repodata/repomd.xml", ErrForbiddenAddress, "address ::1 is loopback", false},
	}
	c := newClient(t, Config{Resolve: res})
	for _, tt := range tests {
		_, _, err := get(t, c, &fetch.Attempt{URL: tt.url})
		checkRefused(t, err, tt.url, tt.sentinel, tt.hint)
	}
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("the loopback service saw %d connections with the default policy", n)
	}
	exact := "origin http://" + a + "/x/by-hash/y: address " + a + " is loopback; pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-loopback)"
	if _, _, err := get(t, c, &fetch.Attempt{URL: "http://" + a + "/x/by-hash/y"}); err.Error() != exact {
		t.Errorf("refusal reads\n%q\nwant\n%q", err, exact)
	}

	open := newClient(t, Config{Resolve: res, Egress: Egress{AllowLoopback: true}})
	for _, tt := range tests {
		_, data, err := get(t, open, &fetch.Attempt{URL: tt.url})
		switch {
		case tt.allowed && (err != nil || string(data) != "secret"):
			t.Errorf("AllowLoopback: %s: %q, %v; want the service's answer", tt.url, data, err)
		case !tt.allowed && tt.sentinel == ErrForbiddenPort:
			checkRefused(t, err, tt.url, tt.sentinel, tt.hint)
		}
	}
}

// "localhost" through the system resolver (the hosts file; no DNS query is
// made for it) is loopback too.
func TestSSRFLocalhost(t *testing.T) {
	t.Parallel()
	c := newClient(t, Config{})
	u := "http://localhost/debian/dists/stable/InRelease"
	_, _, err := get(t, c, &fetch.Attempt{URL: u})
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		t.Skipf("this machine does not resolve localhost: %v", err)
	}
	checkRefused(t, err, u, ErrForbiddenAddress, "localhost resolves to")
}

// routes of the test network: documentation addresses (RFC 5737) stand for
// origins on other machines, which the default policy allows.
const (
	publicA = "203.0.113.10"
	publicB = "203.0.113.11"
	lanC    = "10.1.2.3"
	tlsHost = "example.com" // a name httptest's certificate is valid for
	tlsAddr = "203.0.113.12"
)

// A redirect from an allowed origin is checked like the request itself: by
// scheme, port and address, for literals and for names (at the dial), with
// the default policy.
func TestSSRFRedirect(t *testing.T) {
	t.Parallel()
	vic, addr := victim(t)
	a := addr.String()
	ok := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	pub := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := map[string]string{
			"/to-literal":      "http://" + a + "/secret",
			"/to-mapped":       "http://[::ffff:" + a + "]/secret",
			"/to-name":         "http://victim.test/secret",
			"/to-port":         "http://" + publicB + ":8080/secret",
			"/to-leading-zero": "http://" + publicB + ":0080/secret",
			"/to-link-local":   "http://169.254.169.254/latest/meta-data/",
			"/to-ftp":          "ftp://" + publicB + "/secret",
			"/to-public":       "http://" + publicB + "/ok",
		}[r.URL.Path]
		if n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hops/")); err == nil {
			to = "/hops/" + strconv.Itoa(n-1)
			if n == 0 {
				to = "http://" + publicB + "/ok"
			}
		}
		if to == "" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, to, http.StatusFound)
	}))
	tr := routed(map[string]string{publicA + ":80": hostPort(pub), publicB + ":80": hostPort(ok)})
	c := newClient(t, Config{Transport: tr, Resolve: hosts(map[string][]string{"victim.test": {a}})})
	tests := []struct {
		path     string
		sentinel error
		hint     string
	}{
		{"/to-literal", ErrForbiddenAddress, "redirect to http://" + a + "/secret: address " + a + " is loopback"},
		{"/to-mapped", ErrForbiddenAddress, "is loopback"},
		{"/to-name", ErrForbiddenAddress, "victim.test resolves to " + a + ", which is loopback"},
		{"/to-port", ErrForbiddenPort, "port 8080 is not allowed for origins (allowed: 80, 443; see --allow-ports)"},
		{"/to-leading-zero", ErrForbiddenPort, "leading zeros"},
		{"/to-link-local", ErrForbiddenAddress, "is link-local"},
		{"/to-ftp", ErrForbiddenRedirect, "http and https origins only"},
	}
	for _, tt := range tests {
		u := "http://" + publicA + tt.path
		_, _, err := get(t, c, &fetch.Attempt{URL: u})
		checkRefused(t, err, u, tt.sentinel, tt.hint)
	}
	if n := vic.conns.Load(); n != 0 {
		t.Fatalf("the loopback service saw %d connections through redirects", n)
	}
	for _, p := range []string{"/to-public", "/hops/4"} { // /hops/4 redirects 5 times
		if _, data, err := get(t, c, &fetch.Attempt{URL: "http://" + publicA + p}); err != nil || string(data) != "ok" {
			t.Errorf("%s: %q, %v; want the allowed origin's answer", p, data, err)
		}
	}
	u := "http://" + publicA + "/hops/5"
	if _, _, err := get(t, c, &fetch.Attempt{URL: u}); !errors.Is(err, ErrTooManyRedirects) || !strings.Contains(err.Error(), u) || IsForbidden(err) {
		t.Errorf("6 redirects: %v, want ErrTooManyRedirects", err)
	}
}

// The setting that allows loopback allows redirects to it too.
func TestSSRFRedirectAllowLoopback(t *testing.T) {
	t.Parallel()
	_, addr := victim(t)
	pub := newServer(t, nil, http.RedirectHandler("http://"+addr.String()+"/secret", http.StatusMovedPermanently))
	c := newClient(t, Config{AllowPorts: []int{80, pub.port}, Egress: Egress{AllowLoopback: true}})
	if _, data, err := get(t, c, &fetch.Attempt{URL: pub.URL + "/pool/a.deb"}); err != nil || string(data) != "secret" {
		t.Fatalf("%q, %v", data, err)
	}
}

// A redirect from https down to http is refused.
func TestRedirectDowngrade(t *testing.T) {
	t.Parallel()
	ok := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	tlsSrv := &server{}
	tlsSrv.Server = newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/up" {
			http.Redirect(w, r, "https://"+tlsHost+"/ok", http.StatusFound)
			return
		}
		if r.URL.Path == "/ok" {
			io.WriteString(w, "ok over tls")
			return
		}
		http.Redirect(w, r, "http://"+publicB+"/ok", http.StatusFound)
	}))
	tlsSrv.port = tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	tr := routed(map[string]string{tlsAddr + ":443": hostPort(tlsSrv), publicB + ":80": hostPort(ok)})
	tr.TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c := newClient(t, Config{Transport: tr, Resolve: hosts(map[string][]string{tlsHost: {tlsAddr}})})
	if _, data, err := get(t, c, &fetch.Attempt{URL: "https://" + tlsHost + "/up"}); err != nil || string(data) != "ok over tls" {
		t.Fatalf("https to https: %q, %v", data, err)
	}
	u := "https://" + tlsHost + "/down"
	_, _, err := get(t, c, &fetch.Attempt{URL: u})
	checkRefused(t, err, u, ErrForbiddenRedirect, "never follows a redirect from https to http")
	if n := ok.conns.Load(); n != 0 {
		t.Errorf("the http origin saw %d connections after a refused downgrade", n)
	}
}

// A name that resolved to an allowed address once and to loopback later (DNS
// rebinding) is refused at the later dial; a name with one refused and one
// allowed address is reached through the allowed one only.
func TestSSRFRebinding(t *testing.T) {
	t.Parallel()
	vic, addr := victim(t)
	ok := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var lookups atomic.Int64
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "rebind.test":
			if lookups.Add(1) == 1 {
				return []netip.Addr{netip.MustParseAddr(publicB)}, nil
			}
			return []netip.Addr{addr}, nil
		case "mixed.test":
			return []netip.Addr{addr, netip.MustParseAddr("::ffff:" + addr.String()), netip.MustParseAddr(publicB)}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	c := newClient(t, Config{Transport: routed(map[string]string{publicB + ":80": hostPort(ok)}), Resolve: resolve})
	u := "http://rebind.test/dists/stable/InRelease"
	if _, data, err := get(t, c, &fetch.Attempt{URL: u}); err != nil || string(data) != "ok" {
		t.Fatalf("first resolution: %q, %v", data, err)
	}
	c.CloseIdleConnections()
	_, _, err := get(t, c, &fetch.Attempt{URL: u})
	checkRefused(t, err, u, ErrForbiddenAddress, "rebind.test resolves to "+addr.String()+", which is loopback")
	for range 3 {
		c.CloseIdleConnections()
		if _, data, err := get(t, c, &fetch.Attempt{URL: "http://mixed.test/pool/a.deb"}); err != nil || string(data) != "ok" {
			t.Fatalf("mixed.test: %q, %v; want the allowed address's answer", data, err)
		}
	}
	if n := vic.conns.Load(); n != 0 {
		t.Fatalf("the loopback service saw %d connections", n)
	}
}

// Private ranges are allowed by default (LAN mirrors) and refused by
// DenyPrivate; link-local addresses never reach the network.
func TestPrivateAndLinkLocal(t *testing.T) {
	t.Parallel()
	lan := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "lan") }))
	tr := routed(map[string]string{lanC + ":80": hostPort(lan), "169.254.169.254:80": hostPort(lan)})
	u := "http://" + lanC + "/debian/pool/a.deb"
	c := newClient(t, Config{Transport: tr})
	if _, data, err := get(t, c, &fetch.Attempt{URL: u}); err != nil || string(data) != "lan" {
		t.Fatalf("LAN mirror with the default policy: %q, %v", data, err)
	}
	deny := newClient(t, Config{Transport: tr, Egress: Egress{DenyPrivate: true}})
	_, _, err := get(t, deny, &fetch.Attempt{URL: u})
	checkRefused(t, err, u, ErrForbiddenAddress, "is private; origins in private ranges are refused (--deny-origin-private)")
	before := lan.conns.Load()
	ll := "http://169.254.169.254/latest/meta-data/x.deb"
	_, _, err = get(t, c, &fetch.Attempt{URL: ll})
	checkRefused(t, err, ll, ErrForbiddenAddress, "is link-local; pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-link-local)")
	if lan.conns.Load() != before {
		t.Errorf("a link-local origin was dialed")
	}
	for _, u := range []string{"http://0.0.0.0/a.deb", "http://[::]/a.deb", "http://224.0.0.1/a.deb", "http://255.255.255.255/a.deb", "http://[ff02::1]/a.deb"} {
		_, _, err := get(t, c, &fetch.Attempt{URL: u})
		checkRefused(t, err, u, ErrForbiddenAddress, "pkgswarm never fetches from unspecified, multicast or broadcast addresses")
	}
}

// The node's own non-loopback addresses are refused like loopback, and
// allowed by the same setting.
func TestSSRFOwnAddress(t *testing.T) {
	t.Parallel()
	addrs, err := interfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var own netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); !a.IsLoopback() && !a.IsLinkLocalUnicast() && a.Is4() {
			own = a
			break
		}
	}
	if !own.IsValid() {
		t.Skip("this machine has no non-loopback IPv4 address")
	}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(own, 0).String())
	if err != nil {
		t.Skipf("cannot listen on own address %s: %v", own, err)
	}
	srv := newServer(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "own") }))
	u := "http://" + netip.AddrPortFrom(own, uint16(srv.port)).String() + "/debian/dists/stable/InRelease"
	c := newClient(t, Config{AllowPorts: []int{srv.port}})
	_, _, err = get(t, c, &fetch.Attempt{URL: u})
	checkRefused(t, err, u, ErrForbiddenAddress, "address "+own.String()+" is one of this node's own addresses; pkgswarm refuses loopback, link-local and its own addresses as origins (see --allow-origin-loopback)")
	name := "http://self.test:" + strconv.Itoa(srv.port) + "/debian/dists/stable/InRelease"
	c2 := newClient(t, Config{AllowPorts: []int{srv.port}, Resolve: hosts(map[string][]string{"self.test": {own.String()}})})
	_, _, err = get(t, c2, &fetch.Attempt{URL: name})
	checkRefused(t, err, name, ErrForbiddenAddress, "self.test resolves to "+own.String()+", which is one of this node's own addresses")
	if n := srv.conns.Load(); n != 0 {
		t.Fatalf("the node's own address was dialed %d times", n)
	}
	open := newClient(t, Config{AllowPorts: []int{srv.port}, Egress: Egress{AllowLoopback: true}})
	if _, data, err := get(t, open, &fetch.Attempt{URL: u}); err != nil || string(data) != "own" {
		t.Fatalf("AllowLoopback: %q, %v", data, err)
	}
}

// The list of own addresses is read again when it is older than
// LocalAddrsEvery and on RefreshLocalAddrs; a failed reading keeps the
// previous list; without the list, New refuses to start.
func TestOwnAddrsRefresh(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	list := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	var readErr error
	now := time.Unix(1e9, 0)
	cfg := Config{
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Egress: Egress{LocalAddrsEvery: time.Minute, LocalAddrs: func() ([]netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]netip.Addr(nil), list...), readErr
		}},
	}
	c := newClient(t, cfg)
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	own := func(s string) bool { r, _ := c.pol.classify(netip.MustParseAddr(s)); return r != "" }
	if !own("192.0.2.1") || own("198.51.100.7") {
		t.Fatal("first reading not in force")
	}
	set(func() { list = append(list, netip.MustParseAddr("198.51.100.7")) })
	if own("198.51.100.7") {
		t.Fatal("read again before LocalAddrsEvery")
	}
	set(func() { now = now.Add(time.Minute) })
	if !own("198.51.100.7") {
		t.Fatal("not read again after LocalAddrsEvery")
	}
	set(func() { list = list[:1] })
	if err := c.RefreshLocalAddrs(); err != nil || own("198.51.100.7") {
		t.Fatalf("RefreshLocalAddrs: %v; the address is still own", err)
	}
	set(func() { list, readErr = nil, errors.New("netlink: busy") })
	if err := c.RefreshLocalAddrs(); err == nil || !own("192.0.2.1") {
		t.Fatalf("failed reading: %v; the previous list must stay", err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "netlink: busy") {
		t.Fatalf("New without the list of own addresses: %v", err)
	}
	cfg.Egress.AllowLoopback = true
	if _, err := New(cfg); err != nil {
		t.Fatalf("New with AllowLoopback needs no list: %v", err)
	}
}

// The default dialer's Control refuses what the policy refuses, below every
// name, redirect and retry.
func TestControl(t *testing.T) {
	t.Parallel()
	p, err := newPolicy(Egress{LocalAddrs: func() ([]netip.Addr, error) { return nil, nil }}, []int{80, 443}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for addr, sentinel := range map[string]error{
		"127.0.0.2:80": ErrForbiddenAddress, "[::ffff:127.0.0.2]:80": ErrForbiddenAddress, "[::1]:443": ErrForbiddenAddress,
		"169.254.169.254:80": ErrForbiddenAddress, "203.0.113.1:8080": ErrForbiddenPort, "203.0.113.1:80": nil, "[2001:db8::1]:443": nil,
	} {
		if err := p.control("tcp", addr, nil); !errors.Is(err, sentinel) || (err == nil) != (sentinel == nil) {
			t.Errorf("control(%s) = %v, want %v", addr, err, sentinel)
		}
	}
}

// DialContext, for other code that connects to origins, applies the policy.
func TestDialContext(t *testing.T) {
	t.Parallel()
	c := newClient(t, Config{Resolve: hosts(map[string][]string{"repo.test": {"127.0.0.2"}})})
	for addr, sentinel := range map[string]error{"127.0.0.2:80": ErrForbiddenAddress, "repo.test:443": ErrForbiddenAddress,
		"[::ffff:127.0.0.2]:80": ErrForbiddenAddress, "127.0.0.2:0080": ErrForbiddenPort, "127.0.0.2:22": ErrForbiddenPort} {
		conn, err := c.DialContext(context.Background(), "tcp", addr)
		if conn != nil {
			conn.Close()
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("DialContext(%s) = %v, want %v", addr, err, sentinel)
		}
	}
}

// A given Transport keeps its settings but not its proxy, and one that dials
// by itself is refused.
func TestTransportConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{Transport: &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return nil, nil }}}); err == nil {
		t.Error("a Transport with DialTLSContext was accepted")
	}
	proxy := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via proxy") }))
	ok := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") }))
	tr := &http.Transport{Proxy: http.ProxyURL(mustURL(t, proxy.URL))}
	c := newClient(t, Config{Transport: tr, AllowPorts: []int{ok.port}, Egress: Egress{AllowLoopback: true}})
	if _, data, err := get(t, c, &fetch.Attempt{URL: ok.URL + "/a.deb"}); err != nil || string(data) != "direct" {
		t.Fatalf("%q, %v", data, err)
	}
	if proxy.conns.Load() != 0 {
		t.Error("the Transport's proxy was used")
	}
	if tr.Proxy == nil || tr.DialContext != nil {
		t.Error("the given Transport was modified instead of cloned")
	}
}

// newTLSServer starts an https server on 127.0.0.1 with httptest's
// certificate (valid for example.com).
func newTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewTLSServer(h)
	t.Cleanup(s.Close)
	return s
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A name with addresses of both families is reached through the other family
// when the first one's address refuses connections, in either order.
func TestDialFallback(t *testing.T) {
	t.Parallel()
	srv := newServer(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "v4") }))
	c := newClient(t, Config{AllowPorts: []int{srv.port}, Egress: Egress{AllowLoopback: true},
		Resolve: hosts(map[string][]string{"six-first.test": {"::1", "127.0.0.1"}, "four-first.test": {"127.0.0.9", "::1", "127.0.0.1"}})})
	for _, h := range []string{"six-first.test", "four-first.test"} {
		u := "http://" + h + ":" + strconv.Itoa(srv.port) + "/a.deb"
		if _, data, err := get(t, c, &fetch.Attempt{URL: u}); err != nil || string(data) != "v4" {
			t.Errorf("%s: %q, %v", u, data, err)
		}
	}
	u := "http://nowhere.test:" + strconv.Itoa(srv.port) + "/a.deb"
	c2 := newClient(t, Config{AllowPorts: []int{srv.port}, Egress: Egress{AllowLoopback: true},
		Resolve: hosts(map[string][]string{"nowhere.test": {"::1", "127.0.0.9"}})})
	if _, _, err := get(t, c2, &fetch.Attempt{URL: u}); err == nil || !fetch.IsUnavailable(err) || !strings.Contains(err.Error(), "[::1]") {
		t.Errorf("%s: %v, want the first family's connection error", u, err)
	}
}
