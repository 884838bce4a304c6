package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The doc's generated section lies between these markers.
const (
	beginMarker = "<!-- bench/cmd/single results: begin (generated, do not edit) -->"
	endMarker   = "<!-- bench/cmd/single results: end -->"
)

// plotNames are the PNGs the run makes.
var plotNames = []string{"bench-apt.png", "bench-hot.png", "bench-small.png", "bench-rss.png"}

func writeResults(cfg config, res *Results, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.out, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := Markdown(res, "")
	if err := os.WriteFile(filepath.Join(cfg.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	plotted := true
	if err := plot(res, cfg.out); err != nil {
		log.Warn("no plots", "err", err)
		plotted = false
	}
	log.Info("results written", "dir", cfg.out)
	if cfg.doc == "" {
		return nil
	}
	docDir := filepath.Dir(cfg.doc)
	if plotted {
		for _, p := range plotNames {
			b, err := os.ReadFile(filepath.Join(cfg.out, p))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(docDir, p), b, 0o644); err != nil {
				return err
			}
		}
	}
	doc, err := os.ReadFile(cfg.doc)
	if err != nil {
		return fmt.Errorf("update %s: %w", cfg.doc, err)
	}
	updated, err := ReplaceSection(string(doc), Markdown(res, "./"))
	if err != nil {
		return fmt.Errorf("update %s: %w", cfg.doc, err)
	}
	log.Info("doc updated", "file", cfg.doc)
	return os.WriteFile(cfg.doc, []byte(updated), 0o644)
}

// ReplaceSection puts section between the doc's begin and end markers.
func ReplaceSection(doc, section string) (string, error) {
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("the markers %q and %q are missing or out of order", beginMarker, endMarker)
	}
	return doc[:i+len(beginMarker)] + "\n" + section + doc[j:], nil
}

// Markdown renders the results as tables; imgDir prefixes the plots'
// paths ("" leaves the images out).
func Markdown(res *Results, imgDir string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := res.Machine
	p("\nRun of %s, %.0f s. Machine: %d CPUs (%s), %.1f GiB memory, kernel %s, %s, apt %s. Load average (1, 5, 15 min) before: %s; after: %s.\n\n",
		res.Started.Format("2006-01-02 15:04 UTC"), res.Duration.Seconds(), m.CPUs, m.CPUModel, float64(m.MemTotal)/(1<<30), m.Kernel, m.Go, m.Apt, m.LoadBefore, m.LoadAfter)
	f := res.Fixture
	kind := "real Debian 12 packages"
	if f.Synthetic {
		kind = "generated packages"
	}
	p("Fixture `%s`: %d %s, %.1f MB; large file `%s` (%.1f MB); small file `%s` (%d bytes).\n\n",
		f.ID, f.Packages, kind, float64(f.Bytes)/1e6, f.Largest, float64(f.LargeSize)/1e6, f.Small, f.SmallSize)
	p("Versions: ")
	var vs []string
	for _, t := range res.Targets {
		if t.Version != "" {
			vs = append(vs, fmt.Sprintf("%s: %s", t.Kind, t.Version))
		}
	}
	p("%s.\n\n", strings.Join(vs, "; "))

	p("### Goals (issue 2)\n\n")
	p("| goal | measured | met |\n|---|---|---|\n")
	for _, g := range goals(res) {
		p("| %s | %s | %s |\n", g.goal, g.measured, g.met)
	}

	direct := find(res, "direct")
	p("\n### apt-get update + download of the whole set\n\n")
	p("Seconds; cold = fresh target and fresh client (median of %d, every run listed); warm = a second fresh client through the same target.\n\n", res.Settings.Runs)
	p("| target | cold (median) | of which update / download | cold runs | vs direct | warm | origin GETs / MB, last cold | origin GETs (.deb) / MB, warm |\n|---|---|---|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if len(t.Cold) == 0 {
			continue
		}
		vs := "—"
		if direct != nil && len(direct.Cold) > 0 && t.Kind != "direct" {
			vs = fmt.Sprintf("%+.1f%%", (t.coldMedian()/direct.coldMedian()-1)*100)
		}
		p("| %s | %.2f | %.2f / %.2f | %s | %s | %.2f | %d / %.1f | %d (%d) / %.1f |\n", t.Kind, t.coldMedian(), median(t.ColdUpdate), median(t.ColdDownload), floats(t.Cold), vs, t.Warm,
			t.ColdOriginGETs, t.ColdOriginMB, t.WarmOriginGETs, t.WarmOriginDebs, t.WarmOriginMB)
	}
	if res.Settings.PacedRate > 0 {
		p("\nThe same cold runs with every origin response paced to %.0f MB/s (%.0f Mbit/s), as behind a WAN link:\n\n", float64(res.Settings.PacedRate)/1e6, float64(res.Settings.PacedRate)*8/1e6)
		p("| target | cold, paced origin (median) | runs | vs direct |\n|---|---|---|---|\n")
		for _, t := range res.Targets {
			if len(t.ColdPaced) == 0 {
				continue
			}
			vs := "—"
			if direct != nil && len(direct.ColdPaced) > 0 && t.Kind != "direct" {
				vs = fmt.Sprintf("%+.1f%%", (median(t.ColdPaced)/median(direct.ColdPaced)-1)*100)
			}
			p("| %s | %.2f | %s | %s |\n", t.Kind, median(t.ColdPaced), floats(t.ColdPaced), vs)
		}
	}
	if imgDir != "" {
		p("\n![apt-get update + download, cold and warm](%sbench-apt.png)\n", imgDir)
	}

	p("\n### Hot hits: the large file, already cached, N parallel clients\n\n")
	p("Aggregate MB/s (10^6 bytes) over kept-alive connections; the median of %d rounds, each round going once round all targets with at most %d requests and %.1f s per target and client count.\n\n",
		res.Settings.Reps, hotMaxRequests, res.Settings.HotTime/float64(max(res.Settings.Reps, 1)))
	p("| target | 1 client | 4 clients | 16 clients | p50 latency at 16 (ms) | errors |\n|---|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if len(t.Hot) == 0 {
			continue
		}
		p("| %s", t.Kind)
		errs, p50 := 0, 0.0
		for _, n := range hotClients {
			r, ok := t.hot(n)
			errs += r.Errors
			if n == 16 {
				p50 = r.P50ms
			}
			if ok {
				p(" | %.0f", r.MBps)
			} else {
				p(" | —")
			}
		}
		p(" | %.0f | %d |\n", p50, errs)
	}
	if imgDir != "" {
		p("\n![hot-hit throughput](%sbench-hot.png)\n", imgDir)
	}

	p("\n### Small file: requests per second over kept-alive connections\n\n")
	p("The median of %d rounds of %.1f s per target and client count, as above.\n\n", res.Settings.Reps, res.Settings.SmallTime/float64(max(res.Settings.Reps, 1)))
	p("| target | 1 client | 8 clients | p50 / p99 latency at 1 client (ms) | errors |\n|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if len(t.Small) == 0 {
			continue
		}
		r1, _ := t.small(1)
		r8, _ := t.small(8)
		p("| %s | %.0f | %.0f | %.2f / %.2f | %d |\n", t.Kind, r1.RPS, r8.RPS, r1.P50ms, r1.P99ms, r1.Errors+r8.Errors)
	}
	if imgDir != "" {
		p("\n![small-file rate](%sbench-small.png)\n", imgDir)
	}

	p("\n### Resources of the measured instance\n\n")
	p("CPU seconds of the whole process tree: over the last cold run and the warm run (the same work for every target), and over its whole life (adding the hot and small steps, where the targets served very different numbers of requests); peak RSS summed over the tree (VmHWM, and VmRSS sampled every 20 ms).\n\n")
	p("| target | CPU s, cold + warm run | CPU s, whole life | peak RSS (MiB) | peak RSS, 16 clients (MiB) |\n|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if t.PeakRSS == 0 {
			continue
		}
		apt := "—"
		if t.CPUApt > 0 {
			apt = fmt.Sprintf("%.2f", t.CPUApt)
		}
		p("| %s | %s | %.1f | %.1f | %.1f |\n", t.Kind, apt, t.CPU, float64(t.PeakRSS)/(1<<20), float64(t.PeakRSS16)/(1<<20))
	}
	if imgDir != "" {
		p("\n![peak RSS](%sbench-rss.png)\n", imgDir)
	}

	p("\n### Thundering herd: %d clients at once on a cold cache, the large file, origin paced to %.0f MB/s\n\n", res.Settings.Herd, float64(res.Settings.HerdRate)/1e6)
	p("| target | clients with correct bytes | origin GETs | origin MB | slowest client (s) | first failure |\n|---|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if h := t.Herd; h != nil {
			p("| %s | %d / %d | %d | %.1f | %.1f | %s |\n", t.Kind, h.OK, h.Clients, h.OriginGETs, h.OriginMB, h.SlowestS, orDash(h.FirstFailed))
		}
	}

	p("\n### Tampered package on the origin\n\n")
	p("The origin serves `%s` with one byte flipped (same size). Then the origin is fixed.\n\n", tamperVictim)
	p("| target | apt while tampered | served while tampered | tampered copy in cache | served after fix | apt after fix |\n|---|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if x := t.Tamper; x != nil {
			p("| %s | %s | %s | %s | %s | %s |\n", t.Kind, x.AptWhileTampered, x.ServedWhile, yesNo(x.CachedTampered), x.ServedAfterFix, x.AptAfterFix)
		}
	}

	p("\n### Origin down after the warm run: a fresh client\n\n")
	p("| target | apt-get update | download of the whole set |\n|---|---|---|\n")
	for _, t := range res.Targets {
		if o := t.Offline; o != nil {
			p("| %s | %s | %s |\n", t.Kind, o.Update, o.Download)
		}
	}

	var errs []string
	for _, t := range res.Targets {
		for _, e := range t.Errors {
			errs = append(errs, fmt.Sprintf("- %s: %s", t.Kind, e))
		}
	}
	if len(errs) > 0 {
		p("\n### Phases that failed (their numbers are missing above)\n\n%s\n", strings.Join(errs, "\n"))
	}
	p("\n")
	return b.String()
}

type goal struct{ goal, measured, met string }

// goals checks issue 2's targets against the run.
func goals(res *Results) []goal {
	ps, acng, direct, ngx := find(res, "pkgswarm"), find(res, "apt-cacher-ng"), find(res, "direct"), find(res, "nginx")
	var out []goal
	if ps == nil {
		return out
	}
	if acng != nil {
		for _, n := range hotClients {
			a, okA := acng.hot(n)
			s, okS := ps.hot(n)
			if !okA || !okS {
				continue
			}
			m := fmt.Sprintf("%.0f vs %.0f MB/s (%.2fx)", s.MBps, a.MBps, ratio(s.MBps, a.MBps))
			if ngx != nil {
				if c, ok := ngx.hot(n); ok {
					m += fmt.Sprintf("; nginx %.0f (%.0f%%)", c.MBps, 100*ratio(s.MBps, c.MBps))
				}
			}
			out = append(out, goal{fmt.Sprintf("hot-hit throughput at %d client(s) >= apt-cacher-ng (aim: nginx)", n), m, met(s.MBps >= a.MBps)})
		}
		for _, n := range smallClients {
			a, okA := acng.small(n)
			s, okS := ps.small(n)
			if !okA || !okS {
				continue
			}
			out = append(out, goal{fmt.Sprintf("small-file rate at %d client(s) >= 8x apt-cacher-ng", n),
				fmt.Sprintf("%.0f vs %.0f req/s (%.1fx)", s.RPS, a.RPS, ratio(s.RPS, a.RPS)), met(s.RPS >= 8*a.RPS)})
		}
	}
	if direct != nil && len(direct.Cold) > 0 && len(ps.Cold) > 0 {
		d := (ps.coldMedian()/direct.coldMedian() - 1) * 100
		out = append(out, goal{"cold update + download within 5% of direct (loopback origin)",
			fmt.Sprintf("%.2f s vs %.2f s (%+.1f%%)", ps.coldMedian(), direct.coldMedian(), d), met(d <= 5)})
	}
	if direct != nil && len(direct.ColdPaced) > 0 && len(ps.ColdPaced) > 0 {
		d := (median(ps.ColdPaced)/median(direct.ColdPaced) - 1) * 100
		out = append(out, goal{fmt.Sprintf("cold update + download within 5%% of direct (origin paced to %.0f MB/s)", float64(res.Settings.PacedRate)/1e6),
			fmt.Sprintf("%.2f s vs %.2f s (%+.1f%%)", median(ps.ColdPaced), median(direct.ColdPaced), d), met(d <= 5)})
	}
	if ps.PeakRSS16 > 0 {
		m := fmt.Sprintf("%.1f MiB", float64(ps.PeakRSS16)/(1<<20))
		if acng != nil && acng.PeakRSS16 > 0 {
			m += fmt.Sprintf(" (apt-cacher-ng %.1f MiB)", float64(acng.PeakRSS16)/(1<<20))
		}
		out = append(out, goal{"peak RSS at 16 clients < 64 MiB", m, met(ps.PeakRSS16 < 64<<20)})
	}
	return out
}

func find(res *Results, kind string) *TargetResult {
	for _, t := range res.Targets {
		if t.Kind == kind {
			return t
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func yesNo(b bool) string {
	if b {
		return "**yes**"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return clip(s, 80)
}

func floats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

// plot writes the data files and a gnuplot script into dir and runs it.
func plot(res *Results, dir string) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot not found (Debian package gnuplot-nox): %w", err)
	}
	var apt, hot, small, rss bytes.Buffer
	apt.WriteString("# target cold warm cold-paced\n")
	hot.WriteString("# target c1 c4 c16\n")
	small.WriteString("# target c1 c8\n")
	rss.WriteString("# target peak peak16\n")
	for _, t := range res.Targets {
		if len(t.Cold) > 0 {
			fmt.Fprintf(&apt, "%q %.3f %.3f %.3f\n", t.Kind, t.coldMedian(), t.Warm, median(t.ColdPaced))
		}
		if len(t.Hot) > 0 {
			fmt.Fprintf(&hot, "%q", t.Kind)
			for _, n := range hotClients {
				r, _ := t.hot(n)
				fmt.Fprintf(&hot, " %.1f", r.MBps)
			}
			hot.WriteString("\n")
		}
		if len(t.Small) > 0 {
			r1, _ := t.small(1)
			r8, _ := t.small(8)
			fmt.Fprintf(&small, "%q %.1f %.1f\n", t.Kind, r1.RPS, r8.RPS)
		}
		if t.PeakRSS > 0 {
			fmt.Fprintf(&rss, "%q %.2f %.2f\n", t.Kind, float64(t.PeakRSS)/(1<<20), float64(t.PeakRSS16)/(1<<20))
		}
	}
	for name, b := range map[string]*bytes.Buffer{"apt.dat": &apt, "hot.dat": &hot, "small.dat": &small, "rss.dat": &rss} {
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plots.gp"), []byte(gnuplotScript), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("gnuplot", "plots.gp")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w\n%s", err, out)
	}
	return nil
}

const gnuplotScript = `# Generated by bench/cmd/single: the plots of docs/benchmarks.md.
set terminal pngcairo size 900,440 font "DejaVu Sans,10"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key inside top left horizontal
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.15, 0
set xtics nomirror noenhanced rotate by 15 right

set output "bench-apt.png"
set title "apt-get update + download of the fixture (lower is better)"
set ylabel "seconds"
plot "apt.dat" using 2:xtic(1) title "cold", "" using 3 title "warm", "" using 4 title "cold, paced origin"

set output "bench-hot.png"
set title "Hot hits on the large file (higher is better)"
set ylabel "MB/s, all clients together"
plot "hot.dat" using 2:xtic(1) title "1 client", "" using 3 title "4 clients", "" using 4 title "16 clients"

set output "bench-small.png"
set title "Small file over kept-alive connections (higher is better)"
set ylabel "requests/s"
set logscale y
set yrange [1:*]
plot "small.dat" using 2:xtic(1) title "1 client", "" using 3 title "8 clients"
unset logscale y
set yrange [0:*]

set output "bench-rss.png"
set title "Peak resident memory of the server's process tree (lower is better)"
set ylabel "MiB"
plot "rss.dat" using 2:xtic(1) title "whole run", "" using 3 title "16 clients"
`

func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return pkg + " " + strings.TrimSpace(string(out))
}
