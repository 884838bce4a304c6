package swarm

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in         string
		host       string // "" for a wildcard
		ipv4, ipv6 bool
		port       int
		str        string // listenPlan.String
	}{
		{in: "", ipv4: true, ipv6: true, port: 0, str: ":0"},
		{in: ":6881", ipv4: true, ipv6: true, port: 6881, str: ":6881"},
		{in: "0.0.0.0:6881", ipv4: true, port: 6881, str: "0.0.0.0:6881"},
		{in: "[::]:6881", ipv6: true, port: 6881, str: "[::]:6881"},
		{in: "[::ffff:0.0.0.0]:6881", ipv4: true, port: 6881, str: "0.0.0.0:6881"},
		{in: "127.0.0.1:6881", host: "127.0.0.1", ipv4: true, port: 6881, str: "127.0.0.1:6881"},
		{in: "[::ffff:192.0.2.7]:1", host: "192.0.2.7", ipv4: true, port: 1, str: "192.0.2.7:1"},
		{in: "[::1]:6881", host: "::1", ipv6: true, port: 6881, str: "[::1]:6881"},
		{in: "[fd00::10]:0", host: "fd00::10", ipv6: true, str: "[fd00::10]:0"},
		{in: "[2001:db8::7]:65535", host: "2001:db8::7", ipv6: true, port: 65535, str: "[2001:db8::7]:65535"},
		{in: "[fe80::7%eth0]:6881", host: "fe80::7%eth0", ipv6: true, port: 6881, str: "[fe80::7%eth0]:6881"},
		{in: "169.254.1.1:6881", host: "169.254.1.1", ipv4: true, port: 6881, str: "169.254.1.1:6881"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			p, err := parseListenAddr(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			host := ""
			if p.host.IsValid() {
				host = p.host.String()
			}
			if host != tc.host || p.ipv4 != tc.ipv4 || p.ipv6 != tc.ipv6 || p.port != tc.port {
				t.Errorf("got host %q ipv4 %v ipv6 %v port %d; want %q %v %v %d", host, p.ipv4, p.ipv6, p.port, tc.host, tc.ipv4, tc.ipv6, tc.port)
			}
			if got := p.String(); got != tc.str {
				t.Errorf("String() = %q; want %q", got, tc.str)
			}
		})
	}
}

func TestParseListenAddrErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, reason string }{
		{"6881", "missing port"},
		{"0.0.0.0", "missing port"},
		{"[::1]", "missing port"},
		{"::1:6881", "in brackets"},
		{"0.0.0.0:", `port "" is not a number`},
		{"0.0.0.0:65536", `port "65536" is not a number`},
		{":http", `port "http" is not a number`},
		{"localhost:6881", `host "localhost" is not an IP address`},
		{"[fe80::zz]:6881", "not an IPv6 address"},
		{"224.0.0.1:6881", "multicast"},
		{"[fe80::7]:6881", "needs its interface"},
		{"[::%eth0]:6881", "takes no zone"},
		{"[fd00::1%eth0]:6881", "only a link-local"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			_, err := parseListenAddr(tc.in)
			var le *ListenAddrError
			if !errors.As(err, &le) {
				t.Fatalf("error %v; want a *ListenAddrError", err)
			}
			if le.Addr != tc.in || !strings.Contains(le.Reason, tc.reason) {
				t.Errorf("got Addr %q Reason %q; want Addr %q, Reason containing %q", le.Addr, le.Reason, tc.in, tc.reason)
			}
		})
	}
}

// TestNewRefusesBadListenAddr checks that New reports a bad ListenAddr as
// a *ListenAddrError before it makes anything.
func TestNewRefusesBadListenAddr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := New(context.Background(), Config{DataDir: dir, ListenAddr: "localhost:6881", Blobs: newDirBlobs(t), Logger: testLogger(t)})
	var le *ListenAddrError
	if !errors.As(err, &le) {
		t.Fatalf("New with ListenAddr localhost:6881: %v; want a *ListenAddrError", err)
	}
}

// TestListenIPv6Loopback starts a node on [::1] alone: v1.61.0 would also
// try udp4 on "::1" and fail ("listen udp4: address ::1: no suitable
// address found"). The other forms, wildcards included, are checked socket
// by socket in a namespace by cmd/pkgswarm's TestLabSwarmListen.
func TestListenIPv6Loopback(t *testing.T) {
	t.Parallel()
	n := newNode(t, newDirBlobs(t), func(c *Config) { c.ListenAddr = "[::1]:0" })
	for what, a := range map[string]string{"DHTAddr": n.DHTAddr(), "PeerAddr": n.PeerAddr(), "MetainfoAddr": n.MetainfoAddr()} {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Addr() != netip.IPv6Loopback() || ap.Port() == 0 {
			t.Errorf("%s = %q; want [::1]:port", what, a)
		}
	}
}
