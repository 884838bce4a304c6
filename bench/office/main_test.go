package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1,5,10,20", []int{1, 5, 10, 20}, false},
		{" 20, 1 ,5,5", []int{1, 5, 20}, false},
		{"", nil, true},
		{"0", nil, true},
		{"1,x", nil, true},
		{"201", nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSizes(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseSizes(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseSizes(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseSizes(f *testing.F) {
	for _, s := range []string{"1,5,10,20", "", ",,", "-1", "3,3,2", "999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSizes(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "-n") {
				t.Errorf("error %q does not name the flag", err)
			}
			return
		}
		if len(got) == 0 || !slices.IsSorted(got) || got[0] < 1 || got[len(got)-1] > 200 {
			t.Errorf("parseSizes(%q) = %v: want a sorted non-empty list within 1..200", s, got)
		}
	})
}

func TestParseSetups(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"pkgswarm,direct", []string{setupDirect, setupPkgswarm}, false},
		{"apt-cacher-ng", []string{setupACNG}, false},
		{"approx", nil, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSetups(tc.in)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("parseSetups(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestDefaultSetups: without -setups, the real fixture (no -big) runs every
// set-up but the BitTorrent one, which needs -big's large synthetic file, so
// that the README's plain invocation runs instead of stopping at the check.
func TestDefaultSetups(t *testing.T) {
	if got, want := defaultSetups(0), []string{setupDirect, setupACNG, setupPkgswarm}; !slices.Equal(got, want) {
		t.Errorf("defaultSetups(0) = %v, want %v", got, want)
	}
	if got := defaultSetups(320); !slices.Equal(got, allSetups) {
		t.Errorf("defaultSetups(320) = %v, want %v", got, allSetups)
	}
}

func TestFixtureList(t *testing.T) {
	all, err := fixture.ParseList(fixture.DefaultList)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		keep    []string
		large   int // large packages expected in the list
		wantErr bool
	}{
		{"small only", nil, 0, false},
		{"one large", []string{"llvm-15-dev"}, 1, false},
		{"a small name is not large", []string{"hello"}, 0, true},
		{"unknown", []string{"no-such-package"}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fixtureList(tc.keep)
			if (err != nil) != tc.wantErr {
				t.Fatalf("fixtureList(%v) error = %v, want error %v", tc.keep, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			// The default list ends with three large packages.
			if want := len(all) - 3 + tc.large; len(got) != want {
				t.Errorf("fixtureList(%v) has %d packages, want %d", tc.keep, len(got), want)
			}
			for _, k := range tc.keep {
				if !slices.ContainsFunc(got, func(s fixture.Spec) bool { return s.Name == k }) {
					t.Errorf("fixtureList(%v) lacks %s", tc.keep, k)
				}
			}
		})
	}
}

func TestOriginStats(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, n int) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pool/a.deb", 1000)
	write("dists/InRelease", 100)
	log := []testrepo.Request{
		{Method: "GET", Path: "/dists/InRelease", Status: 200, Bytes: 100},
		{Method: "GET", Path: "/dists/InRelease", Status: 304, Bytes: 0},
		{Method: "GET", Path: "/pool/a.deb", Status: 200, Bytes: 1000},
		{Method: "GET", Path: "/pool/a.deb", Status: 206, Bytes: 400, Range: "bytes=600-"},
		{Method: "HEAD", Path: "/pool/a.deb", Status: 200},
		{Method: "GET", Path: "/pool/missing.deb", Status: 404, Bytes: 20},
	}
	bytes, reqs, debs, unique, dups := originStats(log, dir)
	if bytes != 1520 || reqs != 6 || debs != 3 || unique != 1100 {
		t.Errorf("originStats = bytes %d, requests %d, deb GETs %d, unique %d; want 1520, 6, 3, 1100", bytes, reqs, debs, unique)
	}
	if want := []string{"/pool/a.deb ×2"}; !slices.Equal(dups, want) {
		t.Errorf("dups = %v, want %v", dups, want)
	}
}

func TestCheckArchives(t *testing.T) {
	debs := []fixture.Deb{{Name: "hello", SHA256: "aa"}, {Name: "attr", SHA256: "bb"}}
	for _, tc := range []struct {
		name    string
		got     map[string]string
		wantErr string
	}{
		{"all there", map[string]string{"hello_2.10-3_amd64.deb": "aa", "attr_1%3a2.5.1-4_amd64.deb": "bb"}, ""},
		{"wrong digest", map[string]string{"hello_2.10-3_amd64.deb": "aa", "attr_1%3a2.5.1-4_amd64.deb": "cc"}, "SHA-256 cc"},
		{"missing", map[string]string{"hello_2.10-3_amd64.deb": "aa"}, "no .deb of attr"},
		{"extra", map[string]string{"hello_2.10-3_amd64.deb": "aa", "attr_1_amd64.deb": "bb", "x_1_all.deb": "dd"}, "3 .deb files, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkArchives(tc.got, debs)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("checkArchives: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("checkArchives: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// clockApt is an apt whose every step moves a fake clock on.
type clockApt struct {
	now      time.Time
	archives map[string]string
	failDL   bool
}

func (a *clockApt) clock() time.Time { return a.now }

func (a *clockApt) Update(context.Context) (string, error) {
	a.now = a.now.Add(time.Second)
	return "", nil
}

func (a *clockApt) Download(context.Context, ...string) (string, error) {
	a.now = a.now.Add(2 * time.Second)
	if a.failDL {
		return "E: Failed to fetch", errors.New("exit status 100")
	}
	return "", nil
}

func (a *clockApt) Archives() (map[string]string, error) {
	a.now = a.now.Add(10 * time.Second) // hashing every file: not apt's time
	return a.archives, nil
}

func TestAptRunTimesAptNotTheCheck(t *testing.T) {
	fx := &fixture.Fixture{Debs: []fixture.Deb{{Name: "hello", SHA256: "aa"}}}
	t0 := time.Unix(1000, 0)
	cfg := config{runTimeout: time.Minute}

	a := &clockApt{now: t0, archives: map[string]string{"hello_2.10-3_amd64.deb": "aa"}}
	end, err := aptRun(context.Background(), cfg, a, fx, a.clock)
	if err != nil {
		t.Fatalf("aptRun: %v", err)
	}
	if got := end.Sub(t0); got != 3*time.Second {
		t.Errorf("aptRun ended %v after the start; want 3s (update and download, not the digest check)", got)
	}

	a = &clockApt{now: t0, archives: map[string]string{"hello_2.10-3_amd64.deb": "bb"}}
	if _, err := aptRun(context.Background(), cfg, a, fx, a.clock); err == nil || !strings.Contains(err.Error(), "SHA-256 bb") {
		t.Errorf("aptRun with a wrong file: %v; want the digest check's error", err)
	}

	a = &clockApt{now: t0, failDL: true}
	if _, err := aptRun(context.Background(), cfg, a, fx, a.clock); err == nil || !strings.Contains(err.Error(), "apt-get download") {
		t.Errorf("aptRun with a failed download: %v; want apt-get download's error", err)
	}
}

func TestReplaceBetween(t *testing.T) {
	doc := "# T\n\nintro\n" + beginMarker + "\nold\n" + endMarker + "\noutro\n"
	got, err := replaceBetween(doc, "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# T\n\nintro\n" + beginMarker + "\nnew table\n" + endMarker + "\noutro\n"
	if got != want {
		t.Errorf("replaceBetween = %q, want %q", got, want)
	}
	for _, bad := range []string{"no markers", endMarker + beginMarker, beginMarker} {
		if _, err := replaceBetween(bad, "x"); err == nil {
			t.Errorf("replaceBetween(%q) succeeded; want an error about the markers", bad)
		}
	}
}

func FuzzReplaceBetween(f *testing.F) {
	f.Add("a"+beginMarker+"b"+endMarker+"c", "body")
	f.Add("", "")
	f.Add(endMarker+beginMarker, "x")
	f.Fuzz(func(t *testing.T, doc, body string) {
		got, err := replaceBetween(doc, body)
		if err != nil {
			return
		}
		i := strings.Index(doc, beginMarker)
		j := strings.Index(doc, endMarker)
		if !strings.HasPrefix(got, doc[:i+len(beginMarker)]) || !strings.HasSuffix(got, doc[j:]) {
			t.Errorf("replaceBetween changed text outside the markers: %q -> %q", doc, got)
		}
	})
}

func TestMeanMax(t *testing.T) {
	for _, tc := range []struct {
		in        []int64
		mean, max int64
	}{
		{nil, 0, 0},
		{[]int64{5}, 5, 5},
		{[]int64{1, 2, 9}, 4, 9},
	} {
		if mean, max := meanMax(tc.in); mean != tc.mean || max != tc.max {
			t.Errorf("meanMax(%v) = %d, %d; want %d, %d", tc.in, mean, max, tc.mean, tc.max)
		}
	}
}

// The loss figures of a sites run are the differences of two readings,
// summed site by site, and the report prints them.
func TestLossBetween(t *testing.T) {
	fl := &office.Fleet{Office: &office.Office{}, Site: [][]*office.Node{{nil, nil}, {nil}}}
	a := linkLoss{
		nodes:  []office.TCPCounters{{OutSegs: 100, RetransSegs: 1}, {OutSegs: 50}, {OutSegs: 10, RetransSegs: 10}},
		origin: office.TCPCounters{OutSegs: 1000, RetransSegs: 5},
		drops:  [][2]uint64{{1, 2}, {0, 0}},
	}
	b := linkLoss{
		nodes:  []office.TCPCounters{{OutSegs: 1100, RetransSegs: 21}, {OutSegs: 1050, RetransSegs: 10}, {OutSegs: 10, RetransSegs: 10}},
		origin: office.TCPCounters{OutSegs: 3000, RetransSegs: 105},
		drops:  [][2]uint64{{11, 32}, {4, 5}},
	}
	var r SitesRun
	lossBetween(&r, fl, a, b)
	if want := []float64{0.015, 0}; !slices.Equal(r.SiteRetrans, want) {
		t.Errorf("SiteRetrans %v, want %v (30 of 2000 segments; a site that sent nothing)", r.SiteRetrans, want)
	}
	if r.OriginRetrans != 0.05 {
		t.Errorf("OriginRetrans %v, want 0.05", r.OriginRetrans)
	}
	if want := [][2]uint64{{10, 30}, {4, 5}}; !slices.Equal(r.SiteDrops, want) {
		t.Errorf("SiteDrops %v, want %v", r.SiteDrops, want)
	}
	md := tables(Results{Sites: []SitesRun{{Run: Run{Setup: "pkgswarm"}, SiteRetrans: r.SiteRetrans, OriginRetrans: r.OriginRetrans, SiteDrops: r.SiteDrops}}})
	if !strings.Contains(md, "TCP segments sent again per site [0.015 0] (the origin 0.0500)") || !strings.Contains(md, "[[10 30] [4 5]]") {
		t.Errorf("the report does not give the loss figures:\n%s", md)
	}
	if !strings.Contains(md, "no delay between sites") {
		t.Errorf("the report of a run without a site delay does not say so:\n%s", md)
	}
	md = tables(Results{Sites: []SitesRun{{Run: Run{Setup: "pkgswarm"}, SiteDelay: "10ms"}}})
	if !strings.Contains(md, "sites 40ms apart in round-trip time") {
		t.Errorf("the report does not give the sites' distance:\n%s", md)
	}
}

// TestJoinLives keeps a node's one log as it is and every life of a node
// that lived more than once, in order, each after a line naming it.
func TestJoinLives(t *testing.T) {
	if got := joinLives("node1", []string{"a\n"}); got != "a\n" {
		t.Errorf("one life: %q; want it unchanged", got)
	}
	got := joinLives("node0", []string{"before the kill\n", "after", ""})
	want := "# office: node0 life 1 of 3\nbefore the kill\n# office: node0 life 2 of 3\nafter\n# office: node0 life 3 of 3\n"
	if got != want {
		t.Errorf("three lives: %q; want %q", got, want)
	}
}
