package proxy_test

import (
	"context"
	"fmt"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/internal/node"
	noderig "github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
	"github.com/pkgswarm/pkgswarm/proxy/status"
)

var (
	statRE  = regexp.MustCompile(`data-stat="([^"]+)"[^>]*?data-value="([^"]*)"[^>]*>([^<]*)<`)
	bodyRE  = regexp.MustCompile(`<body[^>]*data-live="([a-z]+)"`)
	countRE = regexp.MustCompile(`data-count="([a-z_]+)"[^>]*>(\d+)<`)
)

type shownStat struct{ value, text string }

// shownStats reads every figure of a dashboard page: name → raw value and
// the text shown.
func shownStats(page string) map[string]shownStat {
	out := map[string]shownStat{}
	for _, m := range statRE.FindAllStringSubmatch(page, -1) {
		out[m[1]] = shownStat{html.UnescapeString(m[2]), html.UnescapeString(m[3])}
	}
	return out
}

// checkFigures checks that a rendered page shows exactly the figures of st.
func checkFigures(t *testing.T, who, page string, st status.Status) {
	t.Helper()
	shown := shownStats(page)
	var served, saved int64
	want := map[string]shownStat{
		"hit_ratio":       {strconv.FormatFloat(st.HitRatio, 'g', -1, 64), fmt.Sprintf("%.1f %%", 100*st.HitRatio)},
		"requests.hit":    {strconv.FormatInt(st.Requests["hit"], 10), strconv.FormatInt(st.Requests["hit"], 10)},
		"requests.miss":   {strconv.FormatInt(st.Requests["miss"], 10), strconv.FormatInt(st.Requests["miss"], 10)},
		"origin.bytes":    {strconv.FormatInt(st.Origin.Bytes, 10), status.FormatBytes(st.Origin.Bytes)},
		"origin.requests": {strconv.FormatInt(st.Origin.Requests, 10), strconv.FormatInt(st.Origin.Requests, 10)},
		"store.bytes":     {strconv.FormatInt(st.Store.Bytes, 10), status.FormatBytes(st.Store.Bytes)},
		"store.blobs":     {strconv.Itoa(st.Store.Blobs), strconv.Itoa(st.Store.Blobs)},
	}
	for src, n := range st.Served {
		want["served."+src] = shownStat{strconv.FormatInt(n, 10), status.FormatBytes(n)}
		served += n
		if src != "origin" {
			saved += n
		}
	}
	want["served_total"] = shownStat{strconv.FormatInt(served, 10), status.FormatBytes(served)}
	want["saved"] = shownStat{strconv.FormatInt(saved, 10), status.FormatBytes(saved)}
	for name, w := range want {
		got, ok := shown[name]
		if !ok {
			t.Errorf("%s: figure %q not shown", who, name)
			continue
		}
		if name == "hit_ratio" {
			// JSON and the script print floats their own way; compare values.
			gv, _ := strconv.ParseFloat(got.value, 64)
			if gv != st.HitRatio || got.text != w.text {
				t.Errorf("%s: hit ratio shown as %q (%s), status says %v (%q)", who, got.text, got.value, st.HitRatio, w.text)
			}
			continue
		}
		if got != w {
			t.Errorf("%s: %s shown as %q (value %s), status says %q (value %s)", who, name, got.text, got.value, w.text, w.value)
		}
	}
	counts := map[string]int{}
	for _, m := range countRE.FindAllStringSubmatch(page, -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	for name, n := range map[string]int{"repositories": len(st.Repos), "verification_failures": len(st.Failures), "transfers": len(st.Transfers)} {
		if counts[name] != n {
			t.Errorf("%s: %s count shown %d, status has %d", who, name, counts[name], n)
		}
	}
	for _, r := range st.Repos {
		if !strings.Contains(page, html.EscapeString(r.Signer)) || !strings.Contains(page, `data-repo="`+html.EscapeString(r.Repo)+`"`) {
			t.Errorf("%s: repository %s signed by %q not shown", who, r.Repo, r.Signer)
		}
	}
	for _, f := range st.Failures {
		if !strings.Contains(page, html.EscapeString(f.URL)) || !strings.Contains(page, html.EscapeString(f.Reason)) {
			t.Errorf("%s: verification failure of %s (%q) not shown", who, f.URL, f.Reason)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestDashboardInChromium runs real apt-get through two nodes (one the
// other's LAN peer), with one tampered package, then loads the dashboard in
// headless Chromium and checks that every figure it shows, after its script
// has polled the status, equals /_pkgswarm/status. With
// PKGSWARM_UPDATE_SCREENSHOT=1 it also writes docs/dashboard.png.
func TestDashboardInChromium(t *testing.T) {
	testtool.Need(t, "chromium", "chromium")
	pkgs := append(append([]testrepo.Package(nil), defaultPackages...),
		testrepo.Package{Name: "echo", Version: "3.2-1", Size: 64 << 10, Seed: 5},
		testrepo.Package{Name: "foxtrot", Version: "0.4", Size: 6 << 20, Seed: 6},
		testrepo.Package{Name: "golf", Version: "1.1", Size: 4 << 20, Seed: 7})
	peer := newRig(t, rigOptions{packages: pkgs})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Node "main" asks "peer" first; its peer table comes from a real
	// discovery with the peer as a static peer (health-checked over HTTP).
	disc, err := discovery.New(discovery.Config{NodeID: "3f9c0a7e5b21d4c8", Static: []string{peer.URL}})
	if err != nil {
		t.Fatal(err)
	}
	go disc.Run(ctx)
	main := &rig{t: t, repo: peer.repo, origin: peer.origin}
	main.start(rigOptions{cfg: func(c *node.Config) {
		c.NodeID = "3f9c0a7e5b21d4c8"
		c.Site = []fetch.Source{&lan.Source{Peers: &staticPeers{peers: []lan.Peer{{ID: "test", URL: peer.URL}}}, NodeID: c.NodeID}}
		c.Peers = func() any { return disc.Peers() }
	}})
	ui := main.HTTP

	// The peer holds alpha and bravo; main gets them from it, the rest from
	// the origin, then serves a second client from its cache.
	pc := peer.client(false)
	if out, err := pc.Update(ctx); err != nil {
		t.Fatalf("apt-get update through the peer: %v\n%s", err, out)
	}
	if out, err := pc.Download(ctx, "alpha", "bravo"); err != nil {
		t.Fatalf("apt-get download through the peer: %v\n%s", err, out)
	}
	main.origin.Tamper(main.repo.Debs["echo"].Path, func(b []byte) []byte {
		b = append([]byte(nil), b...)
		b[len(b)-100] ^= 0x5a
		return b
	})
	c1 := main.client(false)
	if out, err := c1.Update(ctx); err != nil {
		t.Fatalf("apt-get update through main: %v\n%s", err, out)
	}
	if out, err := c1.Download(ctx, "alpha", "bravo", "charlie", "delta", "foxtrot"); err != nil {
		t.Fatalf("apt-get download through main: %v\n%s", err, out)
	}
	if out, err := c1.Download(ctx, "echo"); err == nil {
		t.Fatalf("apt-get accepted a tampered echo:\n%s", out)
	}
	c2 := main.client(true)
	if out, err := c2.Update(ctx); err != nil {
		t.Fatalf("apt-get update through main (prefix mode): %v\n%s", err, out)
	}
	if out, err := c2.Download(ctx, "alpha", "bravo", "charlie", "delta", "foxtrot"); err != nil {
		t.Fatalf("apt-get download through main (prefix mode): %v\n%s", err, out)
	}
	for len(disc.Peers()) == 0 || !disc.Peers()[0].Healthy {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}

	st := main.State()
	if st.Served["lan"] == 0 || st.Served["cache"] == 0 || st.Served["origin"] == 0 || len(st.Failures) == 0 || len(st.Repos) != 1 {
		t.Fatalf("the run did not exercise every source and a failure: served %v, %d failures, %d repositories",
			st.Served, len(st.Failures), len(st.Repos))
	}

	t.Run("server render", func(t *testing.T) {
		page := get(t, ui.URL+"/")
		checkFigures(t, "server-rendered page", page, main.State())
		if !strings.Contains(page, `data-live="static"`) {
			t.Error("the server-rendered page claims to be live")
		}
	})
	t.Run("after the script polled", func(t *testing.T) {
		dom := testtool.Chromium(t, ui.URL+"/", "--dump-dom", "--virtual-time-budget=5000")
		if m := bodyRE.FindStringSubmatch(dom); m == nil || m[1] != "ok" {
			t.Fatalf("the dashboard script did not load the status (body data-live = %v):\n%.2000s", m, dom)
		}
		checkFigures(t, "page in Chromium", dom, main.State())
		if !strings.Contains(dom, `data-id="test"`) || !strings.Contains(dom, "healthy") || !strings.Contains(dom, peer.URL) {
			t.Errorf("the peer %s is not shown as healthy", peer.URL)
		}
		if !strings.Contains(dom, `class="series" data-source="origin"`) {
			t.Error("the chart has no origin series")
		}
	})
	t.Run("assets", func(t *testing.T) {
		for _, p := range []string{"/_pkgswarm/ui/dashboard.js", "/_pkgswarm/ui/dashboard.css", "/_pkgswarm/ui/history"} {
			if get(t, ui.URL+p) == "" {
				t.Errorf("%s is empty", p)
			}
		}
		resp, err := http.Get(ui.URL + "/_pkgswarm/ui/index.html")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the raw template is served: %d", resp.StatusCode)
		}
	})

	if os.Getenv("PKGSWARM_UPDATE_SCREENSHOT") == "" {
		return
	}
	// For the screenshot, one download in progress: golf, throttled at
	// the origin, which no node holds yet.
	slow := main.repo.Debs["golf"]
	main.origin.SetFault(slow.Path, testrepo.Fault{BytesPerSecond: 256 << 10})
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, main.origin.URL+"/"+slow.Path, nil)
		if resp, err := main.ProxyClient().Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for st := main.State(); len(st.Transfers) == 0 || st.Transfers[0].Bytes < 300<<10; st = main.State() {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	testtool.Chromium(t, ui.URL+"/", "--screenshot="+shot, "--window-size=1280,1180", "--virtual-time-budget=3000")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("chromium wrote no PNG screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote docs/dashboard.png (%d bytes)", len(png))
}

// TestDashboardEscapes: strings a LAN peer controls (its id, URL and
// addresses) are shown as text, by the server and by the script.
func TestDashboardEscapes(t *testing.T) {
	testtool.Need(t, "chromium", "chromium")
	const evil = `<img src=x onerror="document.title='pwned'">`
	n := noderig.Start(t, noderig.Options{Quiet: true, Config: func(c *node.Config) {
		c.Peers = func() any {
			return []map[string]any{{"ID": evil, "URL": `"><script>document.title='pwned'</script>`, "Addrs": []string{evil}, "Healthy": true}}
		}
	}})
	ui := n.HTTP
	page := get(t, ui.URL+"/")
	dom := testtool.Chromium(t, ui.URL+"/", "--dump-dom", "--virtual-time-budget=3000")
	for who, html := range map[string]string{"server-rendered page": page, "page in Chromium": dom} {
		if strings.Contains(html, "<img") || strings.Contains(html, "<script>document") || strings.Contains(html, "<title>pwned") {
			t.Errorf("%s: a peer's strings became markup:\n%s", who, html)
		}
		if !strings.Contains(html, "&lt;img src=x") {
			t.Errorf("%s: the peer id is not shown as text", who)
		}
	}
	if m := bodyRE.FindStringSubmatch(dom); m == nil || m[1] != "ok" {
		t.Fatal("the dashboard script did not run")
	}
}
