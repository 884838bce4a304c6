package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 15 item 9: --log-level debug is one line per request: the swarm's
// DHT, discovery's health checks and the index's flushes stay behind
// --log-internals. A clean stop logs one line.
func TestDebugLogIsOneLinePerRequest(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	dir := t.TempDir()
	b := startServe(t, runOpts{}, "--data-dir", filepath.Join(dir, "b"), "--swarm", "lan",
		"--swarm-listen", fmt.Sprintf("127.0.0.1:%d", pb), "--swarm-bootstrap", fmt.Sprintf("127.0.0.1:%d", pa))
	a := startServe(t, runOpts{}, "--data-dir", filepath.Join(dir, "a"), "--log-level", "debug", "--swarm", "lan",
		"--swarm-listen", fmt.Sprintf("127.0.0.1:%d", pa), "--swarm-bootstrap", fmt.Sprintf("127.0.0.1:%d", pb),
		"--peer", "http://"+b.addr)
	// Wait until a has checked its peer's health (discovery's chatter) and
	// its DHT has talked to b's.
	for deadline := time.Now().Add(30 * time.Second); ; {
		st := a.status(t)
		if len(st.Peers) == 1 && st.Peers[0].Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never became a's healthy peer\n%s", a.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}}
	for range 3 {
		resp, err := cl.Get("http://" + a.addr + "/deb.example.org/debian/README")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	log := a.log()
	debug := regexp.MustCompile(`(?m)^.*level=DEBUG.*$`).FindAllString(log, -1)
	requests := 0
	for _, l := range debug {
		if strings.Contains(l, `msg=request `) {
			requests++
			continue
		}
		t.Errorf("a debug line that is not a request: %s", l)
	}
	if requests != 3 {
		t.Errorf("%d request lines at debug, want one per proxy request (3), none for the status polls and health checks\n%s", requests, log)
	}
	stopped := regexp.MustCompile(`(?m)^.*msg="pkgswarm stopped".*$`).FindAllString(log, -1)
	if len(stopped) != 1 {
		t.Errorf("a clean stop logged %d 'pkgswarm stopped' lines, want 1\n%s", len(stopped), log)
	}
	if i := strings.Index(log, `msg="pkgswarm stopped"`); i >= 0 && strings.Contains(log[i:], "\n") && strings.TrimSpace(log[strings.Index(log[i:], "\n")+i:]) != "" {
		t.Errorf("lines after the stop line:\n%s", log[i:])
	}
}
