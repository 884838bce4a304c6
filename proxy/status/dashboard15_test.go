package status

import (
	"strings"
	"testing"
	"time"
)

// Issue 15 item 11: a burst is shown at its rate. apt pulls a file at
// ~200 MB/s for a second and waits; the 5-s average showed a fifth of it.
func TestChartShowsBursts(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1e9, 0)
	d := &dashboard{ring: []dashSample{{Time: t0, Served: map[string]int64{}}}, last: dashRead{at: t0, served: map[string]int64{}}}
	const burst = 200_000_000
	d.read(t0.Add(1*time.Second), map[string]int64{"origin": 0})
	d.read(t0.Add(2*time.Second), map[string]int64{"origin": burst})
	for i := 3; i <= 4; i++ {
		d.read(t0.Add(time.Duration(i)*time.Second), map[string]int64{"origin": burst})
	}
	d.sample(Status{Time: t0.Add(5 * time.Second), Served: map[string]int64{"origin": burst}, Requests: map[string]int64{}})
	hist := d.history()
	if p := hist[1].Peak["origin"]; p != burst {
		t.Fatalf("the interval's peak is %.0f B/s, want %d", p, burst)
	}
	svg := string(chartSVG(hist))
	if top := FormatBytes(burst) + "/s"; !strings.Contains(svg, top) {
		t.Errorf("the chart's top is not the burst's %s:\n%s", top, svg)
	}
	if got := chartSpan(hist); got != "since the node started 5 s ago" {
		t.Errorf("chart span %q", got)
	}
}

// Issue 15 item 11: a root signed long ago is no alarm unless its
// Valid-Until passed.
func TestRootFreshness(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		date, until time.Time
		want        string
		expired     bool
	}{
		{now.Add(-400 * 24 * time.Hour), time.Time{}, "signed 400 d 0 h ago, no expiry", false},
		{now.Add(-2 * 24 * time.Hour), now.Add(5 * 24 * time.Hour), "valid 5 d 0 h more", false},
		{now.Add(-9 * 24 * time.Hour), now.Add(-2 * time.Hour), "expired 2 h 0 min ago", true},
		{time.Time{}, time.Time{}, "", false},
	} {
		got, expired, _ := rootFreshness(now, tc.date, tc.until)
		if got != tc.want || expired != tc.expired {
			t.Errorf("rootFreshness(%v, %v) = %q, %v; want %q, %v", tc.date, tc.until, got, expired, tc.want, tc.expired)
		}
	}
}
