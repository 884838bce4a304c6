package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// statusLine sends one raw request to addr and returns the status line of
// the answer and whether the server closed the connection after it.
func statusLine(t *testing.T, addr, request string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// Issue 15 item 2: apt shows only the status line of an error, so the
// one-line reason is in its reason phrase too: a refused CONNECT, a denied
// client, a prefix written with "://"; denials are logged on the node, one
// line for a burst.
func TestReasonInStatusLine(t *testing.T) {
	n := noderig.Start(t, noderig.Options{})
	addr := strings.TrimPrefix(n.URL, "http://")
	for _, tc := range []struct{ req, want string }{
		{"CONNECT deb.example.org:443 HTTP/1.1\r\nHost: deb.example.org:443\r\n\r\n",
			"HTTP/1.1 403 Forbidden: CONNECT to deb.example.org:443 is not allowed (see --connect-allow)"},
		{"GET /https://deb.example.org/debian/dists/bookworm/InRelease HTTP/1.1\r\nHost: x\r\n\r\n",
			"HTTP/1.1 400 Bad Request: not a proxy request: \"/https://deb.example.org/debian/dists/bookworm/InRelease\": write the prefix as /https/deb.example.org/..."},
		{"GET http://deb.example.org/debian/README.html HTTP/1.1\r\nHost: deb.example.org\r\n\r\n", "HTTP/1.1 403 Forbidden: "},
	} {
		line := statusLine(t, addr, tc.req)
		want := strings.ReplaceAll(tc.want, "…", "...") // the phrase is ASCII
		if want != "HTTP/1.1 403 Forbidden: " {
			// the end may be cut at the length apt reads
			want = want[:min(len(want), len(line))]
		}
		if !strings.HasPrefix(line, want) || len(line) <= len("HTTP/1.1 403 Forbidden: ") {
			t.Errorf("%q answered %q, want %q", strings.SplitN(tc.req, "\r\n", 2)[0], line, tc.want)
		}
	}

	// A denied client, many times: the reason in each status line, one
	// line in the node's log.
	denied := noderig.Start(t, noderig.Options{Config: func(c *node.Config) {
		c.AllowClients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	}})
	daddr := strings.TrimPrefix(denied.URL, "http://")
	for i := range 20 {
		line := statusLine(t, daddr, "GET http://deb.example.org/debian/dists/bookworm/InRelease HTTP/1.1\r\nHost: deb.example.org\r\n\r\n")
		if !strings.HasPrefix(line, "HTTP/1.1 403 Forbidden: clients from 127.0.0.1:") || !strings.Contains(line, "are not allowed (see --allow-clients)") {
			t.Fatalf("denied request %d answered %q", i, line)
		}
	}
	if got := strings.Count(denied.Logs.String(), `msg="request denied or refused"`); got != 1 {
		t.Errorf("%d log lines for 20 denied requests, want 1 (rate-limited):\n%s", got, denied.Logs.String())
	}

	// Answers that succeed keep their connection (keep-alive), and a client
	// goes on after an error answer on a new one.
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}}
	for range 3 {
		resp, err := cl.Get(n.URL + "/https://deb.example.org/x/dists/s/InRelease")
		if err != nil {
			t.Fatalf("a request after an error answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Status, "write the prefix as") {
			t.Errorf("status %q", resp.Status)
		}
	}
}

// Issue 15 item 1: an offline node says so once at start, logs no warning
// per root it serves from its cache, and a miss says "offline" where apt
// shows it (the status line) and in the node's log.
func TestOfflineSaysSoOnce(t *testing.T) {
	needTools(t, "apt-get")
	needRoot(t, "apt-get")
	repo := testrepo.Build(t, testrepo.Options{Packages: opPackages})
	origin := testrepo.Serve(t, repo.Dir)
	u, _ := url.Parse(origin.URL)
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--data-dir", data, "--keyring", repo.Key.KeyringPath, "--allow-origin-loopback", "--allow-ports", "80,443," + u.Port()}

	online := startServe(t, runOpts{}, args...)
	c := aptenv.New(t, aptenv.Options{Proxy: "http://" + online.addr,
		Sources: []aptenv.Source{{URL: origin.URL, Keyring: repo.Key.KeyringPath, Suite: repo.Suite}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := c.Update(ctx); err != nil {
		t.Fatalf("apt-get update online: %v\n%s", err, out)
	}
	if out, err := c.Download(ctx, "alpha"); err != nil {
		t.Fatalf("apt-get download alpha online: %v\n%s", err, out)
	}
	if err := online.stop(); err != nil {
		t.Fatal(err)
	}

	off := startServe(t, runOpts{}, append(args, "--offline")...)
	c = aptenv.New(t, aptenv.Options{Proxy: "http://" + off.addr,
		Sources: []aptenv.Source{{URL: origin.URL, Keyring: repo.Key.KeyringPath, Suite: repo.Suite}}})
	for range 3 {
		if out, err := c.Update(ctx); err != nil {
			t.Fatalf("apt-get update offline, from the cache: %v\n%s", err, out)
		}
	}
	out, err := c.Download(ctx, "bravo")
	if err == nil {
		t.Fatalf("apt-get download bravo offline (never cached) succeeded:\n%s", out)
	}
	if !strings.Contains(out, "504  Gateway Timeout: offline") {
		t.Errorf("apt does not show that the node is offline:\n%s", out)
	}
	off.stop()
	log := off.log()
	start := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="pkgswarm serving"`) {
			start = l
		}
	}
	if !strings.Contains(start, "offline=") {
		t.Errorf("the start-up line does not say offline: %s", start)
	}
	if n := strings.Count(log, "serving the held root") + strings.Count(log, "origins unreachable"); n > 0 {
		t.Errorf("%d warnings about roots served from the cache offline:\n%s", n, log)
	}
	if n := strings.Count(log, "level=WARN"); n != 1 || !strings.Contains(log, "offline") {
		t.Errorf("%d warnings, want the one offline miss:\n%s", n, log)
	}
}
