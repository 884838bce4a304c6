package main

import (
	"errors"
	"github.com/pkgswarm/pkgswarm/internal/testtool"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/aptenv"
)

func TestReplaceSection(t *testing.T) {
	t.Parallel()
	doc := "# Doc\n\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n"
	got, err := ReplaceSection(doc, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Doc\n\n" + beginMarker + "\nnew\n" + endMarker + "\ntail\n"
	if got != want {
		t.Fatalf("ReplaceSection =\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []string{"no markers", endMarker + beginMarker, beginMarker} {
		if _, err := ReplaceSection(bad, "x"); err == nil {
			t.Errorf("ReplaceSection(%q): no error", bad)
		}
	}
}

func TestMedianAndPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, tc := range tests {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	d := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}
	if p := percentile(d, 0.5); p != 2 {
		t.Errorf("p50 = %v, want 2", p)
	}
	if p := percentile(d, 0.99); p != 2 { // index int(0.99*2) = 1
		t.Errorf("p99 of three = %v, want 2", p)
	}
}

// sample is a run with every section filled in.
func sample() *Results {
	hot := func(a, b, c float64) []Rate {
		return []Rate{{Clients: 1, MBps: a, Rounds: 3}, {Clients: 4, MBps: b, Rounds: 3}, {Clients: 16, MBps: c, Rounds: 3}}
	}
	small := func(a, b, p99a, p99b float64) []Rate {
		return []Rate{{Clients: 1, RPS: a, P99ms: p99a}, {Clients: 16, RPS: b, P99ms: p99b}}
	}
	ok := func(runs int) *OriginAudit { return &OriginAudit{Runs: runs, MaxGETs: 1} }
	apt := func(cold []float64, warm float64, au *OriginAudit) *AptResult {
		return &AptResult{Cold: cold, ColdUpdate: cold, ColdDownload: cold, Warm: warm, Audit: au, ColdOriginGETs: 183, ColdOriginMB: 35.7, ColdOriginConns: 1}
	}
	withCPU := func(a *AptResult, cpu ...float64) *AptResult { a.ColdCPU = cpu; return a }
	return &Results{
		Started:  time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, MemTotal: 24 << 30, LoadBefore: "1.00 2.00 3.00"},
		Settings: Settings{Runs: 3, Reps: 3, HotTime: 5, Herd: 20, HerdRate: 50e6, PacedRate: 50e6},
		Fixture:  FixtureInfo{ID: "abc", Packages: 35, Bytes: 179e6, Largest: "big", LargeSize: 72e6, Small: "sl", SmallSize: 13172},
		Scenarios: []ScenarioInfo{
			{ID: scLoopback, Title: "35 packages, loopback", What: "the main set from an origin on loopback", Packages: 35},
			{ID: scPaced, Title: "35 packages, 50 MB/s per response", What: "the main set, paced", ResponseRate: 50e6, Packages: 35},
			{ID: scUpgrade, Title: "180 small packages, loopback", What: "the many-small-files set", Packages: 180},
			{ID: scRTT, Title: "180 small packages, 40 ms RTT", What: "the many-small-files set far away", Packages: 180, DelayMS: 20, UplinkRate: 12.5e6, LimitS: 3.2},
			{ID: scConnPaced, Title: "180 small packages, 10 MB/s per connection", What: "the many-small-files set, paced per connection", Packages: 180, ConnRate: 10e6},
		},
		Targets: []*TargetResult{
			{Kind: "direct", Hot: hot(1000, 2000, 2000), Small: small(10000, 20000, 0.2, 1), Apt: map[string]*AptResult{
				scLoopback: apt([]float64{1, 1.1, 0.9}, 1, ok(3)), scPaced: apt([]float64{4}, 4, ok(1)), scUpgrade: apt([]float64{2}, 2, ok(1)),
				scRTT: {Cold: []float64{3.5}, Warm: 3.5, ColdLinkMB: 36, Audit: ok(1)}, scConnPaced: apt([]float64{5}, 5, ok(1))}},
			{Kind: "pkgswarm", Version: "pkgswarm version dev", Hot: hot(2000, 3000, 3500), Small: small(9500, 20000, 0.25, 0.9),
				PeakRSS: 40 << 20, PeakRSS16: 23 << 20, PeakRSSAll: 50 << 20, CPU: 6.5, HotCPU: 3, HotGB: 10,
				Apt: map[string]*AptResult{
					scLoopback: apt([]float64{1.2, 1.3, 1.4}, 0.8, ok(3)), scPaced: apt([]float64{4.1}, 1, ok(1)), scUpgrade: withCPU(apt([]float64{1.9}, 1, ok(1)), 0.2, 0.123, 0.1),
					scRTT: apt([]float64{3.3}, 1, ok(1)), scConnPaced: apt([]float64{2}, 1, &OriginAudit{Runs: 1, MaxGETs: 2, MaxFile: "/pool/a.deb", Repeated: 1})},
				Herd:    &HerdResult{Clients: 20, OK: 20, OriginGETs: 1, OriginMB: 72},
				Tamper:  &TamperResult{AptWhileTampered: "fetch failed: 502 Bad Gateway", ServedWhile: "HTTP 502", ServedAfterFix: "correct bytes", AptAfterFix: "ok"},
				Offline: &OfflineResult{Update: "ok", Download: "ok"}},
			{Kind: "apt-cacher-ng", Hot: hot(2100, 3800, 4000), Small: small(23, 184, 44, 45), PeakRSS: 12 << 20, PeakRSS16: 12 << 20, PeakRSSAll: 13 << 20,
				HotCPU: 2, HotGB: 10,
				Apt:    map[string]*AptResult{scLoopback: apt([]float64{1.1}, 0.8, &OriginAudit{Runs: 1, MaxGETs: 1, Unasked: 2, UnaskedExample: "/dists/stable/Release"})},
				Tamper: &TamperResult{AptWhileTampered: "Hash Sum mismatch", ServedWhile: "tampered bytes", CachedTampered: true}, Errors: []string{"herd: boom"}},
			{Kind: "nginx", Hot: hot(2000, 2200, 3000), Small: small(10000, 40000, 0.2, 0.8), PeakRSS: 15 << 20},
			// Stopped after the loopback scenario: no hot or small steps.
			{Kind: "nginx-proxy", PeakRSSAll: 9 << 20, CPUApt: 0.04, Apt: map[string]*AptResult{
				scLoopback: apt([]float64{0.95}, 0.97, ok(1)), scUpgrade: apt([]float64{1.98}, 2.01, ok(1))}},
		},
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	md := Markdown(sample(), "./")
	for _, want := range []string{
		"| 2, 13 | hot large file at 16 clients: >= 0.98x nginx and >= 1.0x apt-cacher-ng (median of 3 rounds) | 3500 MB/s: 1.17x nginx (3000), 0.88x apt-cacher-ng (4000) | **no** |",
		"| 2, 13 | hot large file at 1 client: >= 0.98x nginx and >= 1.0x apt-cacher-ng (median of 3 rounds) | 2000 MB/s: 1.00x nginx (2000), 0.95x apt-cacher-ng (2100) | **no** |",
		"| 13 | small hot file at 1 client: >= 0.9x nginx req/s, p99 latency <= nginx's | 9500 vs 10000 req/s (0.95x); p99 0.25 vs 0.20 ms | **no** |",
		"| 13 | small hot file at 16 clients: >= 0.9x nginx req/s, p99 latency <= nginx's | 20000 vs 40000 req/s (0.50x); p99 0.90 vs 0.80 ms | **no** |",
		"| 2 | small hot file at 1 client: >= 8x apt-cacher-ng req/s | 9500 vs 23 req/s (413.0x) | yes |",
		"| 2 | cold update + download of the main set within 5% of direct (loopback origin) | 1.30 s vs 1.00 s (1.30x; 0 of 3 paired runs at 1.05x or less) | **no** |",
		"| 2 | cold update + download of the main set within 5% of direct (each response paced to 50 MB/s) | 4.10 s vs 4.00 s (1.02x; 1 of 1 paired runs at 1.05x or less) | yes |",
		"| 13 | scenario 1, many small files (180 packages), loopback origin: cold <= 1.00x direct | 1.90 s vs 2.00 s (0.95x; 1 of 1 paired runs at 1x or less) | yes |",
		"| 13 | scenario 2, origin 20 ms away (40 ms RTT): cold <= 1.00x direct | 3.30 s vs 3.50 s (0.94x; 1 of 1 paired runs at 1x or less) | yes |",
		"| 13 | scenario 2: cold within 5% of the uplink's own limit for the bytes | 3.30 s vs a limit of 3.20 s (1.03x; direct 1.09x) | yes |",
		"| 13 | scenario 3, origin paces each connection to 10 MB/s: cold <= 0.6x direct | 2.00 s vs 5.00 s (0.40x; 1 of 1 paired runs at 0.6x or less) | yes |",
		"| 13 | the origin serves each file at most once, and never a file no client asked for (every cold run of every scenario) | at most 2 GET(s) per file (`/pool/a.deb`, 180 small packages, 10 MB/s per connection); 0 file(s) no client asked for, over 7 cold runs | **no** |",
		"| 2, 13 | peak RSS <= 64 MiB throughout (every instance, whole life) | 50.0 MiB (at 16 clients 23.0 MiB); apt-cacher-ng 13.0 MiB | yes |",
		"| 13 | CPU seconds per GB served hot <= apt-cacher-ng's | 0.30 vs 0.20 s/GB (1.50x) | **no** |",
		// The scenarios' summary and details.
		"| scenario | direct: cold / warm | pkgswarm: cold / warm | apt-cacher-ng: cold / warm |",
		"| 180 small packages, 10 MB/s per connection | 5.00 / 5.00 | 2.00 / 1.00 (0.40×) | — |",
		"| 35 packages, loopback | 1.00 / 1.00 | 1.30 / 0.80 (1.30×) | 1.10 / 0.80 (1.10×) |",
		"#### 180 small packages, 40 ms RTT",
		"The uplink's own limit for the bytes: 3.20 s, the 36.0 MB that direct apt's last cold run drew through the link (headers included) at 12.5 MB/s, plus 5 round trips of 40 ms",
		"| pkgswarm | 1.90 | 1.90 / 1.90 | 1.90 | 0.95× | 0.123 | 1.00 | 183 / 35.7 / 1 | 0 (0) / 0.0 |",
		// The audit.
		"| pkgswarm | 1 / 0 | 1 / 0 | 1 / 0 | 1 / 0 | **2** / 0 |",
		"| apt-cacher-ng | 1 / **2** | — | — | — | — |",
		"- apt-cacher-ng, 35 packages, loopback: 2 files no client asked for, e.g. `/dists/stable/Release`",
		"- pkgswarm, 180 small packages, 10 MB/s per connection: `/pool/a.deb` served 2 times in one run; 1 files served more than once",
		// The rest.
		"| target | 1 client | 16 clients | p50 / p99 at 1 client (ms) | p50 / p99 at 16 clients (ms) | errors |",
		"| pkgswarm | 9500 | 20000 | 0.00 / 0.25 | 0.00 / 0.90 | 0 |",
		"| pkgswarm | — | 6.5 | 0.30 | 40.0 | 23.0 | 50.0 |",
		"| nginx | — | — | — | 15.0 | 0.0 | 15.0 |", // its VmHWM at Stop is missing, its peak is not
		"| nginx-proxy | 0.04 | — | — | 0.0 | 0.0 | 9.0 |",
		"| nginx-proxy | 0.95 |",
		"| nginx-proxy | 1.98 |",
		"| pkgswarm | 20 / 20 | 1 | 72.0 |",
		"| apt-cacher-ng | Hash Sum mismatch | tampered bytes | **yes** |",
		"- apt-cacher-ng: herd: boom",
		"![hot-hit throughput](./bench-hot.png)",
		"![apt-get update + download per scenario, cold and warm](./bench-apt.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	hot, _, _ := strings.Cut(md[strings.Index(md, "### Hot hits"):], "### Resources")
	if strings.Contains(hot, "| nginx-proxy") {
		t.Errorf("the hot and small tables list nginx-proxy, which held nothing:\n%s", hot)
	}
	if strings.Contains(Markdown(sample(), ""), "![") {
		t.Error("Markdown without an image directory still links images")
	}
	// A run without the optional parts renders without them.
	res := sample()
	res.Scenarios = res.Scenarios[:1]
	for _, tr := range res.Targets {
		tr.Apt = map[string]*AptResult{scLoopback: tr.Apt[scLoopback]}
		if tr.Apt[scLoopback] == nil {
			tr.Apt = nil
		}
	}
	md = Markdown(res, "")
	for _, absent := range []string{"scenario 1", "scenario 2", "scenario 3", "40 ms RTT"} {
		if strings.Contains(md, absent) {
			t.Errorf("Markdown of a loopback-only run mentions %q", absent)
		}
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	asked := map[string]bool{"/dists/stable/InRelease": true, "/pool/a.deb": true, "/pool/b.deb": true}
	tests := []struct {
		name  string
		runs  []map[string]int
		asked map[string]bool
		want  OriginAudit
		ok    bool
	}{
		{"clean", []map[string]int{{"/pool/a.deb": 1, "/pool/b.deb": 1}, {"/pool/a.deb": 1}}, asked,
			OriginAudit{Runs: 2, MaxGETs: 1, MaxFile: "/pool/a.deb"}, true},
		{"served twice", []map[string]int{{"/pool/a.deb": 1}, {"/pool/a.deb": 1, "/pool/b.deb": 3, "/dists/stable/InRelease": 2}}, asked,
			OriginAudit{Runs: 2, MaxGETs: 3, MaxFile: "/pool/b.deb", Repeated: 2}, false},
		{"not asked for", []map[string]int{{"/pool/c.deb": 1, "/dists/stable/Release": 1, "/pool/a.deb": 1}}, asked,
			OriginAudit{Runs: 1, MaxGETs: 1, MaxFile: "/dists/stable/Release", Unasked: 2, UnaskedExample: "/dists/stable/Release"}, false},
		{"unknown without direct", []map[string]int{{"/pool/c.deb": 1}}, nil,
			OriginAudit{Runs: 1, MaxGETs: 1, MaxFile: "/pool/c.deb", Unasked: -1}, true},
		{"no runs", nil, asked, OriginAudit{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := audit(tc.runs, tc.asked)
			if *got != tc.want || got.ok() != tc.ok {
				t.Fatalf("audit = %+v (ok %v), want %+v (ok %v)", *got, got.ok(), tc.want, tc.ok)
			}
		})
	}
}

func TestUplinkLimit(t *testing.T) {
	t.Parallel()
	// 5 round trips of 40 ms, plus 36 MB at 12 MB/s.
	if got := uplinkLimit(40*time.Millisecond, 12e6, 36e6, 0); math.Abs(got-3.2) > 1e-9 {
		t.Errorf("limit with a rate = %v, want 3.2", got)
	}
	// Without a rate: the loopback time instead of the transfer.
	if got := uplinkLimit(40*time.Millisecond, 0, 36e6, 1.5); math.Abs(got-1.7) > 1e-9 {
		t.Errorf("limit without a rate = %v, want 1.7", got)
	}
}

func TestPlotData(t *testing.T) {
	t.Parallel()
	files, script := plotData(sample())
	if got := string(files["apt-conn-paced.dat"]); got != "# target cold warm\n\"direct\" 5.000 5.000\n\"pkgswarm\" 2.000 1.000\n" {
		t.Errorf("apt-conn-paced.dat =\n%s", got)
	}
	if got := string(files["apt-loopback.dat"]); !strings.Contains(got, "\"apt-cacher-ng\" 1.100 0.800\n") {
		t.Errorf("apt-loopback.dat =\n%s", got)
	}
	for _, want := range []string{
		"set multiplot layout 1,5 ",
		`set title "180 small packages\n40 ms RTT" noenhanced`,
		`plot "apt-rtt.dat" using 2:xtic(1) title "cold", "" using 3 title "warm"`,
		"unset multiplot",
		`plot "small.dat" using 2:xtic(1) title "1 client", "" using 3 title "16 clients"`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("the script lacks %q", want)
		}
	}
	if !strings.Contains(string(files["small.dat"]), "# target c1 c16\n") {
		t.Errorf("small.dat = %s", files["small.dat"])
	}
}

// TestPlot runs gnuplot on the sample, when it is installed.
func TestPlot(t *testing.T) {
	t.Parallel()
	testtool.Need(t, "gnuplot", "gnuplot-nox")
	dir := t.TempDir()
	if err := plot(sample(), dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range plotNames {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseScenarios(t *testing.T) {
	t.Parallel()
	got, err := parseScenarios(" rtt, loopback,upgrade ,")
	if err != nil || strings.Join(got, ",") != "rtt,upgrade" {
		t.Fatalf("parseScenarios = %v, %v", got, err)
	}
	if got, err := parseScenarios(""); err != nil || len(got) != 0 {
		t.Fatalf("parseScenarios(\"\") = %v, %v", got, err)
	}
	for _, bad := range []string{"rtt,rtt", "netem"} {
		if _, err := parseScenarios(bad); err == nil {
			t.Errorf("parseScenarios(%q): no error", bad)
		}
	}
}

func TestFetchFailure(t *testing.T) {
	t.Parallel()
	tests := []struct{ out, want string }{
		{"Err:1 http://x hello\n  502  Bad Gateway\nE: Failed to fetch http://127.0.0.1:1/pool/h/hello.deb  502  Bad Gateway [IP: 127.0.0.1 1]\nE: Some files failed\n",
			"fetch failed: 502 Bad Gateway"},
		{"E: Failed to fetch http://x/y\n", "fetch failed"},
		{"W: nothing fetched\n", ""},
	}
	for _, tc := range tests {
		if got := fetchFailure(tc.out); got != tc.want {
			t.Errorf("fetchFailure(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func FuzzFetchFailure(f *testing.F) {
	f.Add("E: Failed to fetch http://x/y  404  Not Found [IP: 127.0.0.1 80]\n")
	f.Add("E: Failed to fetch ")
	f.Fuzz(func(t *testing.T, out string) {
		got := fetchFailure(out)
		if got != "" && !strings.HasPrefix(got, "fetch failed") {
			t.Fatalf("fetchFailure(%q) = %q", out, got)
		}
		if strings.Contains(got, "[IP:") {
			t.Fatalf("fetchFailure(%q) kept the address: %q", out, got)
		}
	})
}

func TestAptVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{&aptenv.Error{Output: "E: Failed to fetch http://x/y  Hash Sum mismatch\n"}, "Hash Sum mismatch"},
		{&aptenv.Error{Output: "E: Failed to fetch http://x/y  502  Bad Gateway [IP: 127.0.0.1 9]\n"}, "fetch failed: 502 Bad Gateway"},
		{&aptenv.Error{Problems: []string{"Err:1 http://x InRelease"}}, "failed: Err:1 http://x InRelease"},
		{errors.New("exec: apt-get not found\nmore"), "failed: exec: apt-get not found"},
	}
	for _, tc := range tests {
		if got := aptVerdict(tc.err); got != tc.want {
			t.Errorf("aptVerdict(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseSpecs(t *testing.T) {
	t.Parallel()
	got, err := parseSpecs(" direct, pkgswarm,pkgswarm+--hold=1ms+--peer-budget=0s ,nginx, nginx-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[4].kind != "nginx-proxy" || got[2].kind != "pkgswarm" || got[2].label != "pkgswarm --hold=1ms --peer-budget=0s" ||
		len(got[2].args) != 2 || got[1].label != "pkgswarm" || len(got[1].args) != 0 {
		t.Fatalf("parseSpecs = %+v", got)
	}
	for _, bad := range []string{"", "squid", "nginx+x", "nginx-proxy+x", "pkgswarm,pkgswarm"} {
		if _, err := parseSpecs(bad); err == nil {
			t.Errorf("parseSpecs(%q): no error", bad)
		}
	}
}

// TestPairedCounts: the goals say in how many paired rounds pkgswarm was at
// its line (leaving out a round where either target's step failed), and in
// how many paired cold runs.
func TestPairedCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b []float64
		f    float64
		want string
	}{
		{[]float64{100, 95, 110}, []float64{100, 100, 100}, 1, "; 2 of 3 rounds at 1x or more"},
		{[]float64{98, 97, 0, 99}, []float64{100, 100, 100, 0}, 0.98, "; 1 of 2 rounds at 0.98x or more"},
		{[]float64{1, 2}, nil, 1, ""},
		{[]float64{1, 2, 3}, []float64{1}, 1, "; 1 of 1 rounds at 1x or more"},
	} {
		if got := roundsAtLeast(tc.a, tc.b, tc.f); got != tc.want {
			t.Errorf("roundsAtLeast(%v, %v, %g) = %q, want %q", tc.a, tc.b, tc.f, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b []float64
		f    float64
		want string
	}{
		{[]float64{1, 1.2, 0.9}, []float64{1, 1, 1}, 1, "; 2 of 3 paired runs at 1x or less"},
		{[]float64{2, 3}, []float64{5, 4, 4}, 0.6, "; 1 of 2 paired runs at 0.6x or less"},
		{nil, []float64{1}, 1, ""},
	} {
		if got := runsAtMost(tc.a, tc.b, tc.f); got != tc.want {
			t.Errorf("runsAtMost(%v, %v, %g) = %q, want %q", tc.a, tc.b, tc.f, got, tc.want)
		}
	}
	res := sample()
	set := func(kind string, hot, small []float64) {
		tr := find(res, kind)
		for i := range tr.Hot {
			if tr.Hot[i].Clients == 4 {
				tr.Hot[i].Round = hot
			}
		}
		for i := range tr.Small {
			if tr.Small[i].Clients == 16 {
				tr.Small[i].Round = small
			}
		}
	}
	set("pkgswarm", []float64{3100, 2900, 3000}, []float64{20000, 19000, 21000})
	set("apt-cacher-ng", []float64{3000, 3000, 3000}, nil)
	set("nginx", []float64{3100, 3000, 3300}, []float64{21000, 22000, 23000})
	md := Markdown(res, "")
	for _, want := range []string{
		"(2200; 1 of 3 rounds at 0.98x or more), ",
		"(3800; 2 of 3 rounds at 1x or more) |",
		"(0.50x; 2 of 3 rounds at 0.9x or more); p99",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the goals lack %q", want)
		}
	}
}
