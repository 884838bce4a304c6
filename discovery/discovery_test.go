package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nodeServer serves HealthPath on loopback as a pkgswarm node with the given
// id would. Setting broken makes it answer 500.
type nodeServer struct {
	*httptest.Server
	id     string
	broken atomic.Bool
}

func newNodeServer(t *testing.T, id string) *nodeServer {
	t.Helper()
	n := &nodeServer{id: id}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != HealthPath {
			http.NotFound(w, r)
			return
		}
		if n.broken.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(NodeInfo{ID: n.id, Version: "test"})
	}))
	t.Cleanup(n.Close)
	return n
}

type change struct {
	id    string
	added bool
}

// runDiscovery starts d.Run and returns a channel of its subscriber events.
func runDiscovery(t *testing.T, d *Discovery) <-chan change {
	t.Helper()
	ch := make(chan change, 100)
	d.Subscribe(func(p Peer, added bool) { ch <- change{p.ID, added} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ch
}

// expect waits for the next event and checks it. The limit only ends a test
// that would otherwise hang; it asserts nothing about speed.
func expect(t *testing.T, ch <-chan change, want change) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("event %+v, want %+v", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no event; want %+v", want)
	}
}

func peerIDs(ps []Peer) string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ",")
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestStaticPeers(t *testing.T) {
	t.Parallel()
	self := newNodeServer(t, "self0000")
	a := newNodeServer(t, "aaaa")
	b := newNodeServer(t, "bbbb")
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // nothing listens there any more

	d, err := New(Config{
		NodeID:         "self0000",
		Static:         []string{self.URL, a.URL + "/", b.URL, deadURL},
		BrowseInterval: 50 * time.Millisecond,
		ExpireAfter:    time.Second,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Peers(); len(got) != 0 {
		t.Fatalf("Peers before Run = %v, want none", got)
	}
	ch := runDiscovery(t, d)
	first, second := <-ch, <-ch
	if !first.added || !second.added || first.id == second.id ||
		(first.id != "aaaa" && first.id != "bbbb") || (second.id != "aaaa" && second.id != "bbbb") {
		t.Fatalf("first events %+v %+v, want aaaa and bbbb added", first, second)
	}
	peers := d.Peers()
	if peerIDs(peers) != "aaaa,bbbb" {
		t.Fatalf("Peers = %s, want aaaa,bbbb (sorted; never self or the dead URL)", peerIDs(peers))
	}
	if p := peers[0]; p.URL != a.URL || p.Source != SourceStatic || !p.Healthy || p.Port == 0 || len(p.Addrs) != 1 {
		t.Errorf("peer aaaa = %+v", p)
	}

	t.Run("dead peer leaves", func(t *testing.T) {
		a.Close()
		expect(t, ch, change{"aaaa", false})
		if peerIDs(d.Peers()) != "bbbb" {
			t.Fatalf("Peers = %s, want bbbb", peerIDs(d.Peers()))
		}
	})
	t.Run("broken health endpoint leaves and comes back", func(t *testing.T) {
		b.broken.Store(true)
		expect(t, ch, change{"bbbb", false})
		b.broken.Store(false)
		expect(t, ch, change{"bbbb", true})
	})
	t.Run("ban and unban", func(t *testing.T) {
		d.Ban("bbbb", time.Now().Add(time.Hour), "test: bad bytes")
		expect(t, ch, change{"bbbb", false})
		if len(d.Peers()) != 0 {
			t.Fatalf("banned peer listed: %v", d.Peers())
		}
		d.Ban("bbbb", time.Time{}, "test: lifted")
		expect(t, ch, change{"bbbb", true})
	})
	t.Run("reported failures mark unhealthy until a probe succeeds", func(t *testing.T) {
		d.ReportFailure("bbbb")
		d.ReportSuccess("bbbb") // resets the count
		d.ReportFailure("bbbb")
		d.ReportFailure("bbbb")
		if peerIDs(d.Peers()) != "bbbb" {
			t.Fatalf("two failures after a success removed the peer: %v", d.Peers())
		}
		d.ReportFailure("bbbb")
		expect(t, ch, change{"bbbb", false})
		expect(t, ch, change{"bbbb", true}) // its health endpoint still answers
	})
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %+v (self or dead URL joined?)", e)
	default:
	}
}

func TestBanBeforeDiscovery(t *testing.T) {
	t.Parallel()
	a := newNodeServer(t, "aaaa")
	c := newNodeServer(t, "cccc")
	d, err := New(Config{NodeID: "me", Static: []string{a.URL, c.URL}, BrowseInterval: 50 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d.Ban("aaaa", time.Now().Add(time.Hour), "test")
	ch := runDiscovery(t, d)
	expect(t, ch, change{"cccc", true})
	if peerIDs(d.Peers()) != "cccc" {
		t.Fatalf("Peers = %s, want only cccc (aaaa was banned before it was found)", peerIDs(d.Peers()))
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node id", Config{}, "NodeID is empty"},
		{"mdns without port", Config{NodeID: "x", MDNS: true}, "Port 0"},
		{"apt proxy without mdns", Config{NodeID: "x", Port: 1, AnnounceAptProxy: true}, "needs MDNS"},
		{"reserved txt", Config{NodeID: "x", TXT: map[string]string{"id": "y"}}, "reserved"},
		{"txt too long", Config{NodeID: "x", TXT: map[string]string{"k": strings.Repeat("v", 300)}}, "255"},
		{"static without scheme", Config{NodeID: "x", Static: []string{"10.0.0.2:3142"}}, "not an http(s)"},
		{"static with path", Config{NodeID: "x", Static: []string{"http://10.0.0.2:3142/debian"}}, "without path"},
		{"long instance", Config{NodeID: "x", Instance: strings.Repeat("i", 64)}, "63"},
		{"negative interval", Config{NodeID: "x", BrowseInterval: -1}, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := Config{NodeID: "0123456789abcdef", Port: 3142, MDNS: true, TXT: map[string]string{"swarm": "6881", "a": "b"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Instance != "pkgswarm-01234567" || c.HostName != "pkgswarm-01234567.local." {
		t.Errorf("Instance %q HostName %q", c.Instance, c.HostName)
	}
	if c.BrowseInterval != 2*time.Second || c.ExpireAfter != 10*time.Second || c.HTTPClient == nil || c.Logger == nil {
		t.Errorf("defaults not filled: %+v", c)
	}
	if got := strings.Join(c.txtRecord(), " "); got != "v=1 id=0123456789abcdef a=b swarm=6881" {
		t.Errorf("TXT = %q", got)
	}
	c2, err := Config{NodeID: "x", Instance: "Büro Proxy #1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c2.HostName != "b--ro-proxy--1.local." {
		t.Errorf("HostName from instance with spaces = %q", c2.HostName)
	}
}

func TestParseTXT(t *testing.T) {
	t.Parallel()
	m := parseTXT([]string{"v=1", "id=abc", "id=evil", "flag", "=nokey", "e="})
	if m["id"] != "abc" || m["v"] != "1" || m["e"] != "" || len(m) != 4 {
		t.Errorf("parseTXT = %v, want the first id to win, flag and e present, =nokey dropped", m)
	}
}

func TestPickAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "<nil>"},
		{[]string{"fe80::1", "10.0.0.1"}, "10.0.0.1"},
		{[]string{"fe80::1"}, "<nil>"},
		{[]string{"2001:db8::1", "10.0.0.2"}, "10.0.0.2"},
		{[]string{"224.0.0.1", "fd00::1"}, "fd00::1"},
		{[]string{"0.0.0.0"}, "<nil>"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			var ips []net.IP
			for _, s := range tc.in {
				ips = append(ips, net.ParseIP(s))
			}
			if got := pickAddr(ips).String(); got != tc.want {
				t.Fatalf("pickAddr(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestMDNSPeerSet drives the peer set with sightings as the mDNS code makes
// them (no sockets), with health checks against loopback servers.
func TestMDNSPeerSet(t *testing.T) {
	t.Parallel()
	a := newNodeServer(t, "aaaa")
	liar := newNodeServer(t, "zzzz") // announces yyyy, answers zzzz
	st := newNodeServer(t, "ssss")
	d, err := New(Config{
		NodeID:         "self",
		Static:         []string{st.URL},
		BrowseInterval: 50 * time.Millisecond,
		ExpireAfter:    time.Second,
		Logger:         quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ch := runDiscovery(t, d)
	expect(t, ch, change{"ssss", true})

	sight := func(srv *nodeServer, id string, extra ...string) sighting {
		ips, port := staticAddr(srv.URL)
		return sighting{instance: "pkgswarm-" + id + "._pkgswarm._tcp.local.", host: id + ".local.", port: port, ips: ips,
			txt: append([]string{"v=1", "id=" + id}, extra...)}
	}
	// Ignored: our own id, another protocol version, no id, an address
	// whose node has another id, and a node also configured statically.
	d.seen(sight(a, "self"), time.Now())
	d.seen(sighting{instance: "x._pkgswarm._tcp.local.", port: 1, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, txt: []string{"v=2", "id=vvvv"}}, time.Now())
	d.seen(sighting{instance: "y._pkgswarm._tcp.local.", port: 1, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, txt: []string{"v=1"}}, time.Now())
	d.seen(sight(liar, "yyyy"), time.Now())
	d.seen(sight(st, "ssss"), time.Now())
	// Taken: aaaa.
	d.seen(sight(a, "aaaa", "swarm=6881"), time.Now())
	expect(t, ch, change{"aaaa", true})
	peers := d.Peers()
	if peerIDs(peers) != "aaaa,ssss" {
		t.Fatalf("Peers = %s, want aaaa,ssss", peerIDs(peers))
	}
	if p := peers[0]; p.Source != SourceMDNS || p.URL != a.URL || p.TXT["swarm"] != "6881" || !p.Healthy {
		t.Errorf("mDNS peer = %+v", p)
	}
	if p := peers[1]; p.Source != SourceStatic {
		t.Errorf("a node both static and announced is listed as %q, want static", p.Source)
	}

	t.Run("goodbye removes at once", func(t *testing.T) {
		d.seen(sighting{instance: "PKGSWARM-aaaa._pkgswarm._tcp.local.", goodbye: true}, time.Now())
		select {
		case e := <-ch:
			if e != (change{"aaaa", false}) {
				t.Fatalf("event %+v after goodbye", e)
			}
		default:
			t.Fatal("goodbye did not remove the peer synchronously")
		}
	})
	t.Run("a peer no longer seen expires", func(t *testing.T) {
		d.seen(sight(a, "aaaa"), time.Now())
		expect(t, ch, change{"aaaa", true})
		expect(t, ch, change{"aaaa", false}) // ExpireAfter is 1s and nothing sees it again
	})
	select {
	case e := <-ch:
		t.Fatalf("unexpected event %+v (an ignored sighting joined?)", e)
	default:
	}
}
