package main

import (
	"slices"
	"time"
)

// Results is one run of the comparison: everything results.json holds.
type Results struct {
	Started  time.Time       `json:"started"`
	Duration time.Duration   `json:"duration_ns"`
	Machine  Machine         `json:"machine"`
	Fixture  FixtureInfo     `json:"fixture"`
	Targets  []*TargetResult `json:"targets"`
	Settings Settings        `json:"settings"`
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

// FixtureInfo describes the fixture.
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

// TargetResult holds every measurement of one target.
type TargetResult struct {
	Kind    string `json:"kind"`
	Version string `json:"version"`

	// Cold: apt-get update + install --download-only of every package
	// through a fresh target and a fresh apt client, in seconds, per run.
	Cold           []float64 `json:"cold_s,omitempty"`
	ColdUpdate     []float64 `json:"cold_update_s,omitempty"`    // the apt-get update part
	ColdDownload   []float64 `json:"cold_download_s,omitempty"`  // the download part
	ColdOriginGETs int       `json:"cold_origin_gets,omitempty"` // last cold run
	ColdOriginMB   float64   `json:"cold_origin_mb,omitempty"`   // last cold run
	// ColdPaced: cold runs with every origin response paced to
	// Settings.PacedRate, as behind a WAN link: what a proxy's own cost
	// amounts to when the origin, not the loopback, is the bottleneck.
	ColdPaced []float64 `json:"cold_paced_s,omitempty"`
	// Warm: the same with a second fresh client through the same target.
	Warm           float64 `json:"warm_s,omitempty"`
	WarmOriginGETs int     `json:"warm_origin_gets"`
	WarmOriginDebs int     `json:"warm_origin_deb_gets"`
	WarmOriginMB   float64 `json:"warm_origin_mb"`

	Hot   []Rate `json:"hot,omitempty"`   // the largest package, 1/4/16 clients
	Small []Rate `json:"small,omitempty"` // the small package, 1/8 clients

	// CPU is the CPU time of the process tree of the measured instance
	// (cold run, warm run, hot and small steps), in seconds.
	CPU float64 `json:"cpu_s,omitempty"`
	// CPUApt is the same up to the end of the warm run: the last cold run
	// and the warm run, the same work for every target.
	CPUApt float64 `json:"cpu_apt_s,omitempty"`
	// PeakRSS is the largest resident size of the instance over its life;
	// PeakRSS16 the largest while 16 clients fetched the large file.
	PeakRSS   int64 `json:"peak_rss,omitempty"`
	PeakRSS16 int64 `json:"peak_rss_16,omitempty"`

	Herd    *HerdResult    `json:"herd,omitempty"`
	Tamper  *TamperResult  `json:"tamper,omitempty"`
	Offline *OfflineResult `json:"offline,omitempty"`

	// Errors are phases that failed; their numbers are missing.
	Errors []string `json:"errors,omitempty"`
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

func (t *TargetResult) coldMedian() float64 { return median(t.Cold) }

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
