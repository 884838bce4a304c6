package main

import (
	"slices"
	"sort"
	"time"
)

// Results is one run of the comparison: everything results.json holds.
type Results struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Machine  Machine       `json:"machine"`
	// Fixture is the main package set's: the hot, small, herd and tamper
	// steps use it. Each scenario names its own set.
	Fixture   FixtureInfo     `json:"fixture"`
	Scenarios []ScenarioInfo  `json:"scenarios"`
	Targets   []*TargetResult `json:"targets"`
	Settings  Settings        `json:"settings"`
}

// Settings are the knobs of the run, for the doc.
type Settings struct {
	Runs      int     `json:"runs"`
	Reps      int     `json:"reps"`
	HotTime   float64 `json:"hot_time_s"`
	SmallTime float64 `json:"small_time_s"`
	Herd      int     `json:"herd"`
	HerdRate  int64   `json:"herd_origin_rate"`
	PacedRate int64   `json:"paced_origin_rate"`
	// RTTDelay is the far origin's one-way delay, UplinkRate the rate of
	// its uplink (0: unlimited), ConnRate the pacing per connection of the
	// conn-paced scenario.
	RTTDelay   float64 `json:"rtt_delay_ms"`
	UplinkRate int64   `json:"uplink_rate"`
	ConnRate   int64   `json:"conn_rate"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   int64  `json:"mem_total"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Apt        string `json:"apt"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

// FixtureInfo describes the main fixture.
type FixtureInfo struct {
	ID        string `json:"id"`
	Synthetic bool   `json:"synthetic"`
	Packages  int    `json:"packages"`
	Bytes     int64  `json:"bytes"`
	Largest   string `json:"largest"`
	LargeSize int64  `json:"largest_size"`
	Small     string `json:"small"`
	SmallSize int64  `json:"small_size"`
}

// The scenarios, by ID: apt-get update + download of a package set
// through every target, cold and warm.
const (
	scLoopback  = "loopback"   // the main set, loopback origin (issue 2)
	scPaced     = "paced"      // the main set, each response paced (issue 2)
	scUpgrade   = "upgrade"    // the many-small-files set, loopback origin (issue 13, 1)
	scRTT       = "rtt"        // the same, origin far away (issue 13, 2)
	scConnPaced = "conn-paced" // the same, origin paces each connection (issue 13, 3)
)

// ScenarioInfo describes one scenario as it was run.
type ScenarioInfo struct {
	ID    string `json:"id"`
	Title string `json:"title"` // a short name, for table rows and the plot
	What  string `json:"what"`  // one sentence: the set and the path to the origin
	// The package set.
	Set       string `json:"set"`
	FixtureID string `json:"fixture_id"`
	Packages  int    `json:"packages"`
	Bytes     int64  `json:"bytes"`
	// The path to the origin; zero values mean none.
	DelayMS      float64 `json:"delay_ms,omitempty"`      // one way, each direction
	UplinkRate   int64   `json:"uplink_rate,omitempty"`   // bytes/s, shared by all connections
	ResponseRate int64   `json:"response_rate,omitempty"` // bytes/s per response
	ConnRate     int64   `json:"conn_rate,omitempty"`     // bytes/s per connection
	// LimitS is, for a scenario with a delay, the uplink's own limit for
	// the bytes: see uplinkLimit.
	LimitS float64 `json:"limit_s,omitempty"`
}

// TargetResult holds every measurement of one target.
type TargetResult struct {
	Kind    string `json:"kind"`
	Version string `json:"version"`

	// Apt holds the apt runs, by scenario ID.
	Apt map[string]*AptResult `json:"apt,omitempty"`

	Hot   []Rate `json:"hot,omitempty"`   // the largest package, 1/4/16 clients
	Small []Rate `json:"small,omitempty"` // the small package, 1/16 clients

	// CPU is the CPU time of the process tree of the instance measured in
	// the loopback scenario (last cold run, warm run, hot and small
	// steps), in seconds.
	CPU float64 `json:"cpu_s,omitempty"`
	// CPUApt is the same up to the end of the warm run: the last cold run
	// and the warm run, the same work for every target.
	CPUApt float64 `json:"cpu_apt_s,omitempty"`
	// HotCPU is the CPU seconds of the process tree during the hot-hit
	// steps, HotGB the GB (10^9 bytes) they served.
	HotCPU float64 `json:"hot_cpu_s,omitempty"`
	HotGB  float64 `json:"hot_gb,omitempty"`
	// PeakRSS is the largest resident size of the loopback instance over
	// its life; PeakRSS16 the largest while 16 clients fetched the large
	// file; PeakRSSAll the largest VmHWM of any instance of the run, read
	// before each is stopped (see peakAny).
	PeakRSS    int64 `json:"peak_rss,omitempty"`
	PeakRSS16  int64 `json:"peak_rss_16,omitempty"`
	PeakRSSAll int64 `json:"peak_rss_all,omitempty"`

	Herd    *HerdResult    `json:"herd,omitempty"`
	Tamper  *TamperResult  `json:"tamper,omitempty"`
	Offline *OfflineResult `json:"offline,omitempty"`

	// Errors are phases that failed; their numbers are missing.
	Errors []string `json:"errors,omitempty"`
}

// AptResult is one target's apt runs in one scenario.
type AptResult struct {
	// Cold: apt-get update + install --download-only of every package of
	// the set through a fresh target and a fresh apt client, in seconds,
	// per run.
	Cold         []float64 `json:"cold_s,omitempty"`
	ColdUpdate   []float64 `json:"cold_update_s,omitempty"`   // the apt-get update part
	ColdDownload []float64 `json:"cold_download_s,omitempty"` // the download part
	// ColdCPU: the CPU seconds (user and system) of the target's process
	// tree over each cold run; empty for direct, which has no process.
	ColdCPU []float64 `json:"cold_cpu_s,omitempty"`
	// What the origin did in the last cold run: GETs, body MB,
	// connections accepted, and (through a relay) the MB it carried
	// towards the clients, headers included.
	ColdOriginGETs  int     `json:"cold_origin_gets,omitempty"`
	ColdOriginMB    float64 `json:"cold_origin_mb,omitempty"`
	ColdOriginConns int     `json:"cold_origin_conns,omitempty"`
	ColdLinkMB      float64 `json:"cold_link_mb,omitempty"`
	// Audit is what the origin served, file by file, over the cold runs.
	Audit *OriginAudit `json:"audit,omitempty"`
	// Warm: a second fresh client through the last cold run's instance.
	Warm           float64 `json:"warm_s,omitempty"`
	WarmOriginGETs int     `json:"warm_origin_gets"`
	WarmOriginDebs int     `json:"warm_origin_deb_gets"`
	WarmOriginMB   float64 `json:"warm_origin_mb"`
}

// OriginAudit checks issue 13's rule for the origin over a scenario's
// cold runs: it serves each file at most once per run, and never a file
// no client asked for. What clients ask for is what the direct target's
// apt asked the origin for in the same scenario (the same apt, the same
// set); without direct runs it is unknown.
type OriginAudit struct {
	Runs int `json:"runs"`
	// MaxGETs is the most GETs answered with a body (200 or 206) for one
	// file in one run, MaxFile that file.
	MaxGETs int    `json:"max_gets_per_file"`
	MaxFile string `json:"max_file,omitempty"`
	// Repeated is the most files served more than once in one run.
	Repeated int `json:"files_served_again"`
	// Unasked is the most files served in one run that no client asked
	// for, with an example; -1 when unknown.
	Unasked        int    `json:"files_not_asked"`
	UnaskedExample string `json:"not_asked_example,omitempty"`
}

// audit checks the files an origin served in each cold run (path → GETs
// with a body) against asked, the paths clients asked for (nil: unknown).
func audit(runs []map[string]int, asked map[string]bool) *OriginAudit {
	a := &OriginAudit{Runs: len(runs)}
	if asked == nil {
		a.Unasked = -1
	}
	for _, served := range runs {
		paths := make([]string, 0, len(served))
		for p := range served {
			paths = append(paths, p)
		}
		sort.Strings(paths) // the examples do not depend on map order
		again, unasked, example := 0, 0, ""
		for _, p := range paths {
			n := served[p]
			if n > a.MaxGETs {
				a.MaxGETs, a.MaxFile = n, p
			}
			if n > 1 {
				again++
			}
			if asked != nil && !asked[p] {
				if unasked == 0 {
					example = p
				}
				unasked++
			}
		}
		a.Repeated = max(a.Repeated, again)
		if asked != nil && unasked > a.Unasked {
			a.Unasked, a.UnaskedExample = unasked, example
		}
	}
	return a
}

// ok says whether the audit met the rule (an unknown Unasked does not
// count against it).
func (a *OriginAudit) ok() bool { return a != nil && a.MaxGETs <= 1 && a.Unasked <= 0 }

// setupRTTs is how many round trips an apt run through a far origin
// cannot avoid, whoever is in between: apt-get update opens a connection
// (1), fetches InRelease (1), then the indexes InRelease names (1);
// apt-get install --download-only is another process and opens another
// connection (1), and its pipelined requests are answered at least one
// round trip later (1).
const setupRTTs = 5

// uplinkLimit is the uplink's own limit for an apt run's bytes: the time
// the link needs to carry them, downBytes (what the direct run's origin
// sent through it, headers included) at rate bytes/s, plus setupRTTs round
// trips. With no rate (0) the link is as fast as loopback, and the time
// the bytes take is the direct run's on a loopback origin, loopbackS.
func uplinkLimit(rtt time.Duration, rate, downBytes int64, loopbackS float64) float64 {
	t := setupRTTs * rtt.Seconds()
	if rate > 0 {
		return t + float64(downBytes)/float64(rate)
	}
	return t + loopbackS
}

// Rate is one load step.
type Rate struct {
	Clients  int     `json:"clients"`
	Rounds   int     `json:"rounds"` // MBps and RPS are the median round's
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	MBps     float64 `json:"mbps"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	FirstErr string  `json:"first_error,omitempty"`
	// Round is each round's rate (MB/s for the hot steps, requests/s for
	// the small ones) in the order the rounds ran, 0 for a round whose step
	// failed: the rounds of two targets pair up, the machine's state shared.
	Round []float64 `json:"round,omitempty"`
}

// HerdResult is the thundering herd on a cold cache.
type HerdResult struct {
	Clients     int     `json:"clients"`
	OK          int     `json:"ok"`
	OriginGETs  int     `json:"origin_gets"`
	OriginMB    float64 `json:"origin_mb"`
	SlowestS    float64 `json:"slowest_s"`
	FirstFailed string  `json:"first_failure,omitempty"`
}

// TamperResult is what a target does with a .deb the origin tampered with
// (same size, one byte changed), before and after the origin is fixed.
type TamperResult struct {
	AptWhileTampered string `json:"apt_while_tampered"` // "ok" or apt's complaint
	ServedWhile      string `json:"served_while"`       // "tampered bytes", "correct bytes" or "HTTP nnn"
	CachedTampered   bool   `json:"cached_tampered"`    // a file with the tampered digest is in the cache
	ServedAfterFix   string `json:"served_after_fix"`
	AptAfterFix      string `json:"apt_after_fix"`
}

// OfflineResult is a fresh client's update and download with the origin
// down, after the warm run.
type OfflineResult struct {
	Update   string `json:"update"`   // "ok" or apt's complaint
	Download string `json:"download"` // "ok" or apt's complaint
}

// apt returns t's runs in scenario id, or nil.
func (t *TargetResult) apt(id string) *AptResult {
	if t == nil {
		return nil
	}
	return t.Apt[id]
}

// coldMedian is the median cold run; 0 for none (or a nil a).
func (a *AptResult) coldMedian() float64 {
	if a == nil {
		return 0
	}
	return median(a.Cold)
}

func (t *TargetResult) hot(clients int) (Rate, bool) {
	for _, r := range t.Hot {
		if r.Clients == clients {
			return r, true
		}
	}
	return Rate{}, false
}

func (t *TargetResult) small(clients int) (Rate, bool) {
	for _, r := range t.Small {
		if r.Clients == clients {
			return r, true
		}
	}
	return Rate{}, false
}

// peakAny is the largest resident size of any instance: PeakRSSAll, or
// the loopback instance's peaks before and during its 16-client step (its
// VmHWM was reset before that step, so its reading at Stop misses them).
func (t *TargetResult) peakAny() int64 { return max(t.PeakRSSAll, t.PeakRSS, t.PeakRSS16) }

// cpuPerGB is CPU seconds per GB served hot; 0 when unknown.
func (t *TargetResult) cpuPerGB() float64 {
	if t.HotGB <= 0 {
		return 0
	}
	return t.HotCPU / t.HotGB
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of sorted durations, in milliseconds.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}
