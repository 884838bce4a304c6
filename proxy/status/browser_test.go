package status_test

import (
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/status"
	"github.com/pkgswarm/pkgswarm/proxy/trust"
)

// Issue 15 item 11, in the browser: the chart says what it spans (the
// uptime, not "last hour"), its scale is the burst's rate, and a root
// signed long ago without expiry is shown plainly while an expired one is
// flagged — on the server-rendered page and after the script redrew it.
func TestDashboardNitsInChromium(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	start := now.Add(-10 * time.Minute)
	const burst = 200_000_000
	hist := []status.DashSample{{Time: start, Served: map[string]int64{}}}
	for i := 1; i <= 120; i++ {
		smp := status.DashSample{Time: start.Add(time.Duration(i) * 5 * time.Second), Served: map[string]int64{"origin": burst}}
		if i == 60 {
			smp.Peak = map[string]float64{"origin": burst}
		}
		if i < 60 {
			smp.Served = map[string]int64{"origin": 0}
		}
		hist = append(hist, smp)
	}
	st := status.Status{Version: status.SchemaVersion, PkgswarmVersion: "test", NodeID: "0123456789abcdef", Time: now.Add(2 * time.Second),
		Served: map[string]int64{"cache": 0, "lan": 0, "swarm": 0, "origin": burst}, Requests: map[string]int64{"hit": 0, "miss": 1},
		Failures: []status.Failure{}, Transfers: nil, Peers: []status.Peer{},
		Repos: []trust.RepoStatus{
			{Repo: "http://stable.example.org/debian/dists/stable", Trusted: true, Signer: "k", Date: now.Add(-400 * 24 * time.Hour)},
			{Repo: "http://expired.example.org/debian/dists/x", Trusted: true, Signer: "k", Date: now.Add(-9 * 24 * time.Hour), ValidUntil: now.Add(-2 * time.Hour)},
		}}
	srv := httptest.NewServer(status.DashboardForTest(st, hist))
	defer srv.Close()

	check := func(who, page string) {
		t.Helper()
		if strings.Contains(page, "last hour") {
			t.Errorf("%s: the chart says \"last hour\" over 10 minutes of uptime", who)
		}
		if !regexp.MustCompile(`id="chart-span">since the node started 10 min ago<`).MatchString(page) {
			t.Errorf("%s: the chart does not say it spans the 10 minutes since the start:\n%.3000s", who, page)
		}
		if !strings.Contains(page, status.FormatBytes(burst)+"/s") {
			t.Errorf("%s: the chart's scale is not the burst's %s/s", who, status.FormatBytes(burst))
		}
		stable := regexp.MustCompile(`data-repo="http://stable.example.org/debian/dists/stable"[\s\S]*?</tr>`).FindString(page)
		if !strings.Contains(stable, "signed 400 d 0 h ago, no expiry") || strings.Contains(stable, "badge warn") || strings.Contains(stable, "badge bad") {
			t.Errorf("%s: the long-lived stable root reads as an alarm: %s", who, stable)
		}
		expired := regexp.MustCompile(`data-repo="http://expired.example.org/debian/dists/x"[\s\S]*?</tr>`).FindString(page)
		if !strings.Contains(expired, `class="badge warn"`) || !strings.Contains(expired, "expired 2 h 0 min ago") {
			t.Errorf("%s: the expired root is not flagged: %s", who, expired)
		}
	}
	resp, err := srv.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("server-rendered page", string(page))
	dom := testtool.Chromium(t, srv.URL+"/", "--dump-dom", "--virtual-time-budget=5000")
	if !strings.Contains(dom, `data-live="ok"`) {
		t.Fatalf("the script did not poll the status:\n%.2000s", dom)
	}
	check("page in Chromium", dom)
}
