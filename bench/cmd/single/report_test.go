package main

import (
	"errors"
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
		return []Rate{{Clients: 1, MBps: a}, {Clients: 4, MBps: b}, {Clients: 16, MBps: c}}
	}
	small := func(a, b float64) []Rate { return []Rate{{Clients: 1, RPS: a}, {Clients: 8, RPS: b}} }
	return &Results{
		Started:  time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, MemTotal: 24 << 30, LoadBefore: "1.00 2.00 3.00"},
		Settings: Settings{Runs: 3, HotTime: 5, Herd: 20, HerdRate: 50e6, PacedRate: 50e6},
		Fixture:  FixtureInfo{ID: "abc", Packages: 35, Bytes: 179e6, Largest: "big", LargeSize: 72e6, Small: "sl", SmallSize: 13172},
		Targets: []*TargetResult{
			{Kind: "direct", Cold: []float64{1, 1.1, 0.9}, ColdPaced: []float64{4}, Warm: 1, Hot: hot(1000, 2000, 2000), Small: small(10000, 20000)},
			{Kind: "pkgswarm", Version: "pkgswarm version dev", Cold: []float64{1.2, 1.3, 1.4}, ColdPaced: []float64{4.1}, Warm: 0.8,
				Hot: hot(2000, 3000, 3500), Small: small(5000, 20000), PeakRSS: 40 << 20, PeakRSS16: 23 << 20, CPU: 6.5,
				Herd:    &HerdResult{Clients: 20, OK: 20, OriginGETs: 1, OriginMB: 72},
				Tamper:  &TamperResult{AptWhileTampered: "fetch failed: 502 Bad Gateway", ServedWhile: "HTTP 502", ServedAfterFix: "correct bytes", AptAfterFix: "ok"},
				Offline: &OfflineResult{Update: "ok", Download: "ok"}},
			{Kind: "apt-cacher-ng", Cold: []float64{1.1}, Warm: 0.8, Hot: hot(2100, 3800, 4000), Small: small(23, 184), PeakRSS: 12 << 20, PeakRSS16: 12 << 20,
				Tamper: &TamperResult{AptWhileTampered: "Hash Sum mismatch", ServedWhile: "tampered bytes", CachedTampered: true}, Errors: []string{"herd: boom"}},
			{Kind: "nginx", Hot: hot(2000, 2200, 3000), Small: small(10000, 40000), PeakRSS: 15 << 20},
		},
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	md := Markdown(sample(), "./")
	for _, want := range []string{
		"| hot-hit throughput at 16 client(s) >= apt-cacher-ng (aim: nginx) | 3500 vs 4000 MB/s (0.88x); nginx 3000 (117%) | **no** |",
		"| small-file rate at 1 client(s) >= 8x apt-cacher-ng | 5000 vs 23 req/s (217.4x) | yes |",
		"| cold update + download within 5% of direct (loopback origin) | 1.30 s vs 1.00 s (+30.0%) | **no** |",
		"| cold update + download within 5% of direct (origin paced to 50 MB/s) | 4.10 s vs 4.00 s (+2.5%) | yes |",
		"| peak RSS at 16 clients < 64 MiB | 23.0 MiB (apt-cacher-ng 12.0 MiB) | yes |",
		"| pkgswarm | 20 / 20 | 1 | 72.0 |",
		"| apt-cacher-ng | Hash Sum mismatch | tampered bytes | **yes** |",
		"- apt-cacher-ng: herd: boom",
		"![hot-hit throughput](./bench-hot.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	if strings.Contains(Markdown(sample(), ""), "![") {
		t.Error("Markdown without an image directory still links images")
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
	got, err := parseSpecs(" direct, pkgswarm,pkgswarm+--hold=1ms+--peer-budget=0s ,nginx")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[2].kind != "pkgswarm" || got[2].label != "pkgswarm --hold=1ms --peer-budget=0s" ||
		len(got[2].args) != 2 || got[1].label != "pkgswarm" || len(got[1].args) != 0 {
		t.Fatalf("parseSpecs = %+v", got)
	}
	for _, bad := range []string{"", "squid", "nginx+x", "pkgswarm,pkgswarm"} {
		if _, err := parseSpecs(bad); err == nil {
			t.Errorf("parseSpecs(%q): no error", bad)
		}
	}
}
