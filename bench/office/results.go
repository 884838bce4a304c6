package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// Results is everything one invocation measured (office-results.json).
type Results struct {
	Name      string       `json:"name,omitempty"`
	Started   time.Time    `json:"started"`
	Finished  time.Time    `json:"finished"`
	Machine   string       `json:"machine"`
	Pkgswarm  string       `json:"pkgswarm_version"`
	ACNG      string       `json:"apt_cacher_ng_version"`
	Apt       string       `json:"apt_version"`
	Uplink    string       `json:"uplink_rate"`
	Delay     string       `json:"uplink_one_way_delay"`
	LAN       string       `json:"lan_rate"`
	Discovery string       `json:"pkgswarm_discovery"`
	Fixture   FixtureInfo  `json:"fixture"`
	Runs      []Run        `json:"runs"`
	Churn     *ChurnResult `json:"churn,omitempty"`
	Mirrors   []MirrorRun  `json:"mirrors,omitempty"`
	Sites     []SitesRun   `json:"sites,omitempty"`
}

// FixtureInfo describes the package set every node downloads.
type FixtureInfo struct {
	ID       string   `json:"id"`
	Packages int      `json:"packages"`
	Bytes    int64    `json:"deb_bytes"`
	Large    []string `json:"large"`
}

// Run is one set-up at one office size.
type Run struct {
	Setup string `json:"setup"`
	Nodes int    `json:"nodes"`
	// OK is true when every apt-get succeeded and every .deb it left has
	// the repository's SHA-256.
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
	Notes  []string `json:"notes,omitempty"`
	// FinishSeconds is from the moment every node started apt-get update
	// to the moment the last node's download ended; FirstSeconds to the
	// first's. NodeSeconds holds each node's, by index.
	FinishSeconds float64   `json:"finish_s"`
	FirstSeconds  float64   `json:"first_s"`
	NodeSeconds   []float64 `json:"node_s"`
	// Origin traffic: body bytes the origin sent, its requests, the .deb
	// GETs among them, and UniqueBytes: one copy of every file it served
	// (the sizes of the distinct paths it answered with 200 or 206).
	OriginBytes    int64   `json:"origin_bytes"`
	OriginRequests int     `json:"origin_requests"`
	OriginDebGETs  int     `json:"origin_deb_gets"`
	UniqueBytes    int64   `json:"unique_bytes"`
	OriginRatio    float64 `json:"origin_ratio"`
	// OriginLinkTx is what the origin host sent on its link (IP level,
	// headers and retransmissions included).
	OriginLinkTx int64 `json:"origin_link_tx"`
	// Upload: bytes each node sent on its LAN link (IP level), mean and
	// max over the nodes; CacheUpload the shared cache box's.
	UploadMean  int64 `json:"upload_mean"`
	UploadMax   int64 `json:"upload_max"`
	CacheUpload int64 `json:"cache_upload,omitempty"`
	// NodeUpload holds each node's upload, by index (where the busiest
	// node is, e.g. the one that fetched from the origin).
	NodeUpload []int64 `json:"node_upload,omitempty"`
	// Served sums the pkgswarm nodes' served_bytes by tier (cache, lan,
	// swarm, origin) after the run.
	Served map[string]int64 `json:"served_bytes,omitempty"`
	// DupPaths lists paths the origin served more than once, with counts,
	// for pkgswarm runs whose ratio exceeds one copy.
	DupPaths []string `json:"dup_paths,omitempty"`
}

// ChurnResult is the churn run: a Run plus what happened when.
type ChurnResult struct {
	Run
	// AptRuns is how many apt-get update+download runs there were; all
	// must succeed.
	AptRuns int      `json:"apt_runs"`
	Events  []string `json:"events"`
}

// originStats sums an origin access log: body bytes, requests, .deb GETs,
// one copy (the on-disk size under dir of each distinct path answered with
// 200 or 206), and the paths served in full more than once.
func originStats(log []testrepo.Request, dir string) (bytes int64, requests, debGETs int, unique int64, dups []string) {
	seen := map[string]int{}
	for _, r := range log {
		requests++
		bytes += r.Bytes
		if r.Method == "GET" && strings.HasSuffix(r.Path, ".deb") {
			debGETs++
		}
		if r.Method != "GET" || (r.Status != 200 && r.Status != 206) {
			continue
		}
		if seen[r.Path] == 0 {
			if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.Path, "/")))); err == nil {
				unique += fi.Size()
			}
		}
		seen[r.Path]++
	}
	for p, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", p, n))
		}
	}
	slices.SortFunc(dups, func(a, b string) int { return cmp.Compare(a, b) })
	return bytes, requests, debGETs, unique, dups
}

// checkArchives compares the .deb files apt left (file name -> SHA-256)
// with the fixture: every package must be there once with its digest.
// apt names a file NAME_VERSION_ARCH.deb with an epoch's ':' as "%3a".
func checkArchives(got map[string]string, debs []fixture.Deb) error {
	var problems []string
	for _, d := range debs {
		var found []string
		for file, sum := range got {
			if strings.HasPrefix(file, d.Name+"_") {
				found = append(found, file)
				if sum != d.SHA256 {
					problems = append(problems, fmt.Sprintf("%s has SHA-256 %s, the repository's is %s", file, sum, d.SHA256))
				}
			}
		}
		if len(found) == 0 {
			problems = append(problems, "no .deb of "+d.Name)
		}
	}
	if len(got) != len(debs) {
		problems = append(problems, fmt.Sprintf("%d .deb files, want %d", len(got), len(debs)))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("archives: %s", strings.Join(problems, "; "))
	}
	return nil
}

// meanMax returns the mean and the maximum of xs (0, 0 for none).
func meanMax(xs []int64) (mean, max int64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var sum int64
	for _, x := range xs {
		sum += x
		if x > max {
			max = x
		}
	}
	return sum / int64(len(xs)), max
}
