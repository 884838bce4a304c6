package status

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/trust"
)

// The dashboard is server-rendered HTML (it reads well with JavaScript off)
// plus one small script that polls /_pkgswarm/status every 2 s and redraws
// the same figures in place. Assets are embedded: no build step, no CDN.
//
//go:embed web
var webFS embed.FS

// dashboardUIPrefix is where the dashboard's own assets and its history
// endpoint live. The lead registers both "GET /{$}" and this prefix.
const dashboardUIPrefix = "/_pkgswarm/ui/"

// Dashboard sampling. The served-bytes counters are read every second and
// the fastest per-second rate of each source is kept; every 5 s that peak
// becomes one point of the chart, and the last dashboardSamples points are
// kept (one hour). apt fetches a file at full speed for a second or two
// and then waits: a 5-s average showed ~21 MiB/s for bursts of ~200 MB/s,
// so the chart plots each interval's peak second (and the average stays
// in the counters).
const (
	dashboardReadEvery   = time.Second
	dashboardSampleEvery = 5 * time.Second
	dashboardSamples     = 720
)

// dashboardSources is the display order of the served-bytes sources; any
// other source the metrics report is appended after them.
var dashboardSources = []string{"cache", "lan", "swarm", "origin"}

// Dashboard returns the handler of the web dashboard: GET / renders the page
// and GET /_pkgswarm/ui/... serves its script, stylesheet and sampled history
// (/_pkgswarm/ui/history, JSON). Register it for both:
//
//	d := n.Dashboard(ctx)
//	mux.Handle("GET /{$}", d)
//	mux.Handle("GET /_pkgswarm/ui/", d)
//
// Each call starts one sampler goroutine that records the served-bytes
// counters every 5 s (and at each page load) for the over-time chart; one
// hour is kept. It stops when ctx ends. Routes registers one dashboard;
// another call makes an independent one.
func (n *Node) Dashboard(ctx context.Context) http.Handler {
	// The first sample is the node's start, when every counter is zero
	// (each Metrics has its own registry). Status is not called here: the
	// callbacks behind it (Peers, Extra) may not be ready yet.
	start := n.now()
	d := &dashboard{n: n, tmpl: dashboardTemplate, ring: []dashSample{{Time: start, Served: map[string]int64{}}},
		last: dashRead{at: start, served: map[string]int64{}}}
	go func() {
		t := time.NewTicker(dashboardReadEvery)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				now := n.now()
				d.read(now, n.Metrics.served())
				if i%int(dashboardSampleEvery/dashboardReadEvery) == 0 {
					d.sample(n.Status())
				}
			}
		}
	}()
	return d
}

// dashboard serves the page and keeps the sampled history.
type dashboard struct {
	n    *Node
	tmpl *template.Template

	mu   sync.Mutex // protects ring, last, peak
	ring []dashSample
	last dashRead           // the last per-second read of the counters
	peak map[string]float64 // fastest per-second rate by source since the last sample
}

// dashRead is one read of the served-bytes counters.
type dashRead struct {
	at     time.Time
	served map[string]int64
}

// dashSample is one point of the history: cumulative counters at a time,
// and the fastest rate of each source over one second since the point
// before (bytes/s). The chart plots Peak where it is known, else the
// average between consecutive points.
type dashSample struct {
	Time   time.Time          `json:"t"`
	Served map[string]int64   `json:"served"`
	Peak   map[string]float64 `json:"peak,omitempty"`
	Origin int64              `json:"origin"`
	Hits   int64              `json:"hits"`
	Misses int64              `json:"misses"`
}

// read takes one per-second read of the counters and keeps each source's
// fastest rate since the last sample.
func (d *dashboard) read(now time.Time, served map[string]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readLocked(now, served)
}

func (d *dashboard) sample(st Status) {
	smp := dashSample{Time: st.Time, Served: st.Served, Origin: st.Origin.Bytes,
		Hits: st.Requests["hit"], Misses: st.Requests["miss"]}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ring) > 0 {
		// The bytes since the last read count too: a peak is at least the
		// average over the read interval that the sample closes.
		d.readLocked(st.Time, st.Served)
		smp.Peak = d.peak
		d.peak = nil
	}
	d.ring = append(d.ring, smp)
	if len(d.ring) > dashboardSamples {
		d.ring = slices.Delete(d.ring, 0, len(d.ring)-dashboardSamples)
	}
}

// readLocked is read with d.mu held. A read less than 0.2 s after the
// last one (a page load right after a tick) is skipped: over so short a
// time one write makes a rate no client saw.
func (d *dashboard) readLocked(now time.Time, served map[string]int64) {
	if dt := now.Sub(d.last.at).Seconds(); dt >= 0.2 {
		if d.peak == nil {
			d.peak = map[string]float64{}
		}
		for src, n := range served {
			rate := float64(n-d.last.served[src]) / dt
			d.peak[src] = math.Max(d.peak[src], math.Max(0, rate))
		}
		d.last = dashRead{at: now, served: served}
	}
}

func (d *dashboard) history() []dashSample {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ring)
}

func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/":
		d.servePage(w, r)
	case r.URL.Path == dashboardUIPrefix+"history":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(d.history())
	case strings.HasPrefix(r.URL.Path, dashboardUIPrefix):
		d.serveAsset(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (d *dashboard) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, dashboardUIPrefix)
	if name == "" || strings.Contains(name, "/") || name == "index.html" {
		http.NotFound(w, r)
		return
	}
	sub, _ := fs.Sub(webFS, "web")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, sub, name)
}

func (d *dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	st := d.n.Status()
	d.sample(st)
	v := buildDashView(st, d.history())
	var buf bytes.Buffer
	if err := d.tmpl.Execute(&buf, v); err != nil {
		http.Error(w, "pkgswarm: rendering the dashboard failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page loads only its own script and stylesheet and talks only to
	// this node.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

// dashView is what the page template renders. Every figure carries its raw
// value in a data attribute so the script (and the browser test) can match
// it against /_pkgswarm/status.
type dashView struct {
	Status       Status
	HitRatio     string // "87.5 %"
	Hits, Misses int64
	Sources      []dashSource
	ServedTotal  int64
	Saved        int64 // bytes clients got from cache, LAN and swarm: not fetched from an origin
	Peers        []dashPeer
	Transfers    []dashTransfer
	Repos        []dashRepo
	Failures     []Failure // newest first
	Chart        template.HTML
	ChartSpan    string // what the chart spans: "since the node started 12 min ago", "last hour"
	History      []dashSample
}

type dashSource struct {
	Name  string
	Bytes int64
	Pct   float64 // share of ServedTotal, 0..100
}

type dashPeer struct {
	ID, URL, Addrs, Source string
	Healthy                bool
	LastSeen               time.Time
	Failures               int64
}

type dashTransfer struct {
	fetch.Transfer
	Pct float64 // -1 when the size is unknown
}

type dashRepo struct {
	trust.RepoStatus
	Age      string // how the root stands: "valid 6 d 2 h more", "signed 412 d 3 h ago, no expiry", "expired 2 h 5 min ago"
	Expired  bool   // past its Valid-Until: apt refuses it
	AgeTitle string // the dates behind Age
}

func buildDashView(st Status, hist []dashSample) dashView {
	v := dashView{Status: st, HitRatio: formatRatio(st.HitRatio), Hits: st.Requests["hit"], Misses: st.Requests["miss"], History: hist}
	for _, name := range sourceOrder(st.Served) {
		n := st.Served[name]
		v.Sources = append(v.Sources, dashSource{Name: name, Bytes: n})
		v.ServedTotal += n
		if name != "origin" {
			v.Saved += n
		}
	}
	for i := range v.Sources {
		if v.ServedTotal > 0 {
			v.Sources[i].Pct = 100 * float64(v.Sources[i].Bytes) / float64(v.ServedTotal)
		}
	}
	v.Peers = dashPeers(st.Peers)
	for _, t := range st.Transfers {
		pct := -1.0
		if t.Size > 0 {
			pct = math.Min(100, 100*float64(t.Bytes)/float64(t.Size))
		}
		v.Transfers = append(v.Transfers, dashTransfer{t, pct})
	}
	slices.SortFunc(v.Transfers, func(a, b dashTransfer) int { return a.Started.Compare(b.Started) })
	for _, r := range st.Repos {
		age, expired, title := rootFreshness(st.Time, r.Date, r.ValidUntil)
		v.Repos = append(v.Repos, dashRepo{r, age, expired, title})
	}
	v.Failures = slices.Clone(st.Failures)
	slices.Reverse(v.Failures)
	v.Chart = chartSVG(hist)
	v.ChartSpan = chartSpan(hist)
	return v
}

// rootFreshness says how a root stands without alarming where nothing is
// wrong: a repository that publishes rarely (a third-party archive, a
// stable release between point releases) keeps a root dated months ago,
// and apt takes it as long as its Valid-Until (if any) has not passed.
// Only a root past its Valid-Until is a problem (apt refuses it).
func rootFreshness(now, date, validUntil time.Time) (text string, expired bool, title string) {
	if date.IsZero() {
		return "", false, ""
	}
	title = "signed " + date.UTC().Format("2006-01-02 15:04 UTC")
	switch {
	case validUntil.IsZero():
		return "signed " + formatAge(now.Sub(date)) + " ago, no expiry", false, title + "; the root sets no Valid-Until: apt accepts it however old"
	case now.After(validUntil):
		return "expired " + formatAge(now.Sub(validUntil)) + " ago", true, title + "; Valid-Until " + validUntil.UTC().Format("2006-01-02 15:04 UTC") + ": apt refuses it until the origin signs a new one"
	}
	return "valid " + formatAge(validUntil.Sub(now)) + " more", false, title + "; Valid-Until " + validUntil.UTC().Format("2006-01-02 15:04 UTC")
}

// chartSpan says what the chart spans: the history kept, which is the
// node's uptime until an hour of samples is full.
func chartSpan(hist []dashSample) string {
	if len(hist) < 2 {
		return "since the node started"
	}
	span := hist[len(hist)-1].Time.Sub(hist[0].Time)
	if len(hist) >= dashboardSamples {
		return "last " + formatAge(span)
	}
	return "since the node started " + formatAge(span) + " ago"
}

// sourceOrder lists the sources of served in display order.
func sourceOrder(served map[string]int64) []string {
	out := slices.Clone(dashboardSources)
	var extra []string
	for k := range served {
		if !slices.Contains(out, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// dashPeers are the rows of the peer table.
func dashPeers(peers []Peer) []dashPeer {
	var out []dashPeer
	for _, p := range peers {
		out = append(out, dashPeer{ID: p.ID, URL: p.URL, Addrs: strings.Join(p.Addrs, ", "), Source: p.Source,
			Healthy: p.Healthy, LastSeen: p.LastSeen, Failures: int64(p.Failures)})
	}
	return out
}

// FormatBytes prints n with a binary unit: "0 B", "1023 B", "1.5 KiB",
// "20.0 MiB". The dashboard script formats the same way (its test compares
// them).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatRatio prints a ratio in 0..1 as a percentage with one decimal.
func formatRatio(r float64) string { return fmt.Sprintf("%.1f %%", 100*r) }

// formatAge prints a duration coarsely: "42 s", "5 min", "3 h 12 min", "4 d 2 h".
func formatAge(d time.Duration) string {
	if d < 0 {
		return "in the future"
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min", s/60)
	case s < 86400:
		return fmt.Sprintf("%d h %d min", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%d d %d h", s/86400, s%86400/3600)
}

// Chart geometry, shared with web/dashboard.js (which redraws the chart
// with the same layout).
const (
	chartW, chartH       = 720, 180
	chartPadL, chartPadB = 64, 22
	chartPadT, chartPadR = 8, 8
	chartMinSpan         = 60 * time.Second
	chartTicks           = 4
	chartMinRate         = 1024.0 // bytes/s: the y axis never shows less
)

// chartColors are the series colours by source (also in dashboard.css and
// dashboard.js).
var chartColors = map[string]string{"cache": "#2e7d32", "lan": "#1565c0", "swarm": "#6a1b9a", "origin": "#ef6c00"}

func chartColor(name string) string {
	if c, ok := chartColors[name]; ok {
		return c
	}
	return "#555"
}

// chartSVG draws bytes per second served by each source: the fastest
// second of each interval between consecutive samples (the average where
// no peak was read), as an inline SVG (so the first render needs no
// script).
func chartSVG(hist []dashSample) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="chart" viewBox="0 0 %d %d" role="img" aria-label="bytes per second served, by source">`, chartW, chartH)
	if len(hist) < 2 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="muted">collecting samples…</text></svg>`, chartW/2-60, chartH/2)
		return template.HTML(b.String())
	}
	t0, t1 := hist[0].Time, hist[len(hist)-1].Time
	if t1.Sub(t0) < chartMinSpan {
		t0 = t1.Add(-chartMinSpan)
	}
	span := t1.Sub(t0).Seconds()
	names := sourceOrder(hist[len(hist)-1].Served)
	type pt struct{ x, y float64 }
	series := map[string][]pt{}
	maxRate := chartMinRate
	for i := 1; i < len(hist); i++ {
		dt := hist[i].Time.Sub(hist[i-1].Time).Seconds()
		if dt <= 0 {
			continue
		}
		for _, n := range names {
			rate := math.Max(0, float64(hist[i].Served[n]-hist[i-1].Served[n])/dt)
			if p, ok := hist[i].Peak[n]; ok {
				rate = math.Max(rate, p) // the fastest second of the interval
			}
			maxRate = math.Max(maxRate, rate)
			series[n] = append(series[n], pt{hist[i].Time.Sub(t0).Seconds(), rate})
		}
	}
	plotW, plotH := float64(chartW-chartPadL-chartPadR), float64(chartH-chartPadT-chartPadB)
	for i := 0; i <= chartTicks; i++ {
		y := float64(chartPadT) + plotH*float64(i)/chartTicks
		val := maxRate * float64(chartTicks-i) / chartTicks
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, chartPadL, chartW-chartPadR, y, y)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s/s</text>`, chartPadL-6, y+4, template.HTMLEscapeString(FormatBytes(int64(val))))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">%s</text>`, chartPadL, chartH-4, template.HTMLEscapeString("-"+formatAge(t1.Sub(t0))))
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">now</text>`, chartW-chartPadR, chartH-4)
	for _, n := range names {
		pts := series[n]
		if len(pts) == 0 {
			continue
		}
		var path strings.Builder
		for i, p := range pts {
			x := float64(chartPadL) + plotW*p.x/span
			y := float64(chartPadT) + plotH*(1-p.y/maxRate)
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x, y)
		}
		fmt.Fprintf(&b, `<path class="series" data-source="%s" fill="none" stroke="%s" stroke-width="2" d="%s"/>`,
			template.HTMLEscapeString(n), chartColor(n), strings.TrimSpace(path.String()))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var dashboardTemplate = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"bytes": FormatBytes,
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"age":   formatAge,
	"color": chartColor,
	"since": func(now, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return formatAge(now.Sub(t)) + " ago"
	},
	"utc":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"json": func(v any) (template.JS, error) { b, err := json.Marshal(v); return template.JS(b), err },
	"short": func(s string) string {
		if len(s) > 16 {
			return s[:16] + "…"
		}
		return s
	},
}).ParseFS(webFS, "web/index.html"))
