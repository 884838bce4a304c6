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
	p("Main fixture `%s`: %d %s, %.1f MB; large file `%s` (%.1f MB); small file `%s` (%d bytes).\n\n",
		f.ID, f.Packages, kind, float64(f.Bytes)/1e6, f.Largest, float64(f.LargeSize)/1e6, f.Small, f.SmallSize)
	p("Versions: ")
	var vs []string
	for _, t := range res.Targets {
		if t.Version != "" {
			vs = append(vs, fmt.Sprintf("%s: %s", t.Kind, t.Version))
		}
	}
	p("%s.\n\n", strings.Join(vs, "; "))

	p("### Goals (issues 2 and 13)\n\n")
	p("| issue | goal | measured | met |\n|---|---|---|---|\n")
	for _, g := range goals(res) {
		p("| %s | %s | %s | %s |\n", g.issue, g.goal, g.measured, g.met)
	}

	markdownApt(&b, res, imgDir)
	markdownAudit(&b, res)

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
	p("The median of %d rounds of %.1f s per target and client count, as above; latency percentiles over all rounds.\n\n", res.Settings.Reps, res.Settings.SmallTime/float64(max(res.Settings.Reps, 1)))
	p("| target |")
	for _, n := range smallClients {
		p(" %s |", clients(n))
	}
	for _, n := range smallClients {
		p(" p50 / p99 at %s (ms) |", clients(n))
	}
	p(" errors |\n|---|%s%s---|\n", strings.Repeat("---|", len(smallClients)), strings.Repeat("---|", len(smallClients)))
	for _, t := range res.Targets {
		if len(t.Small) == 0 {
			continue
		}
		p("| %s |", t.Kind)
		errs := 0
		for _, n := range smallClients {
			r, _ := t.small(n)
			errs += r.Errors
			p(" %.0f |", r.RPS)
		}
		for _, n := range smallClients {
			r, _ := t.small(n)
			p(" %.2f / %.2f |", r.P50ms, r.P99ms)
		}
		p(" %d |\n", errs)
	}
	if imgDir != "" {
		p("\n![small-file rate](%sbench-small.png)\n", imgDir)
	}

	p("\n### Resources\n\n")
	p("CPU seconds of the whole process tree of the instance measured in the loopback scenario: over its last cold run and the warm run (the same work for every target), over its whole life (adding the hot and small steps, where the targets served very different numbers of requests), and per GB it served in the hot-hit steps. Peak RSS summed over the tree (VmHWM, and VmRSS sampled every 20 ms): of that instance, while 16 clients fetched the large file, and the largest of any instance of the run (VmHWM before each is stopped).\n\n")
	p("| target | CPU s, cold + warm run | CPU s, whole life | CPU s per GB served hot | peak RSS (MiB) | peak RSS, 16 clients (MiB) | peak RSS, any instance (MiB) |\n|---|---|---|---|---|---|---|\n")
	for _, t := range res.Targets {
		if t.PeakRSS == 0 && t.PeakRSSAll == 0 {
			continue
		}
		apt, life, perGB := "—", "—", "—"
		if t.CPUApt > 0 {
			apt = fmt.Sprintf("%.2f", t.CPUApt)
		}
		if t.CPU > 0 {
			life = fmt.Sprintf("%.1f", t.CPU)
		}
		if g := t.cpuPerGB(); g > 0 {
			perGB = fmt.Sprintf("%.2f", g)
		}
		p("| %s | %s | %s | %s | %.1f | %.1f | %.1f |\n", t.Kind, apt, life, perGB, mib(t.PeakRSS), mib(t.PeakRSS16), mib(t.peakAny()))
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

	p("\n### Origin down: a fresh client through the loopback scenario's instance, after the hot and small steps\n\n")
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

// aptTargets are the targets with apt runs, in order.
func aptTargets(res *Results) []*TargetResult {
	var out []*TargetResult
	for _, t := range res.Targets {
		if len(t.Apt) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// markdownApt renders the scenarios: one table of every scenario's cold
// and warm medians, the plot, then each scenario's runs.
func markdownApt(b *strings.Builder, res *Results, imgDir string) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	trs := aptTargets(res)
	if len(trs) == 0 || len(res.Scenarios) == 0 {
		return
	}
	direct := find(res, "direct")
	p("\n### apt-get update + download: every scenario, cold and warm\n\n")
	p("Seconds. Cold: a fresh target (empty cache) and a fresh apt client, the median of %d runs; warm: a second fresh client through the last cold run's target. In brackets: the cold median over direct's.\n\n", res.Settings.Runs)
	p("| scenario |")
	for _, t := range trs {
		p(" %s: cold / warm |", t.Kind)
	}
	p("\n|---|%s\n", strings.Repeat("---|", len(trs)))
	for _, sc := range res.Scenarios {
		p("| %s |", sc.Title)
		for _, t := range trs {
			a := t.apt(sc.ID)
			if a == nil || len(a.Cold) == 0 {
				p(" — |")
				continue
			}
			p(" %.2f / %s", a.coldMedian(), warmText(a))
			if d := direct.apt(sc.ID); t != direct && d != nil && len(d.Cold) > 0 {
				p(" (%.2f×)", ratio(a.coldMedian(), d.coldMedian()))
			}
			p(" |")
		}
		p("\n")
	}
	if imgDir != "" {
		p("\n![apt-get update + download per scenario, cold and warm](%sbench-apt.png)\n", imgDir)
	}
	for _, sc := range res.Scenarios {
		p("\n#### %s\n\n", sc.Title)
		p("%s.", upperFirst(sc.What))
		if sc.LimitS > 0 {
			if sc.UplinkRate > 0 {
				p(" The uplink's own limit for the bytes: %.2f s, the %.1f MB that direct apt's last cold run drew through the link (headers included) at %.1f MB/s, plus %d round trips of %.0f ms that no one between apt and the origin can save (see docs/benchmarks.md).",
					sc.LimitS, directLinkMB(res, sc.ID), float64(sc.UplinkRate)/1e6, setupRTTs, 2*sc.DelayMS)
			} else {
				p(" The uplink's own limit for the bytes: %.2f s, direct apt's cold median on a loopback origin plus %d round trips of %.0f ms (see docs/benchmarks.md).",
					sc.LimitS, setupRTTs, 2*sc.DelayMS)
			}
		}
		p("\n\n| target | cold (median) | update / download | cold runs | vs direct | CPU s, cold (median) | warm | origin GETs / MB / connections, last cold | origin GETs (.deb) / MB, warm |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, t := range trs {
			a := t.apt(sc.ID)
			if a == nil || len(a.Cold) == 0 {
				continue
			}
			vs := "—"
			if d := direct.apt(sc.ID); t != direct && d != nil && len(d.Cold) > 0 {
				vs = fmt.Sprintf("%.2f×", ratio(a.coldMedian(), d.coldMedian()))
			}
			cpu := "—"
			if len(a.ColdCPU) > 0 {
				cpu = fmt.Sprintf("%.3f", median(a.ColdCPU))
			}
			p("| %s | %.2f | %.2f / %.2f | %s | %s | %s | %s | %d / %.1f / %d | %s |\n", t.Kind, a.coldMedian(), median(a.ColdUpdate), median(a.ColdDownload), floats(a.Cold), vs,
				cpu, warmText(a), a.ColdOriginGETs, a.ColdOriginMB, a.ColdOriginConns, warmOrigin(a))
		}
	}
}

// markdownAudit renders the origin's audit per target and scenario.
func markdownAudit(b *strings.Builder, res *Results) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	trs := aptTargets(res)
	if len(trs) == 0 || len(res.Scenarios) == 0 {
		return
	}
	p("\n### The origin: each file at most once, never one that no client asked for\n\n")
	p("Per target and scenario, over its cold runs: the most GETs the origin answered with a body (200 or 206) for one file in one run, and the most files served in one run that no client asked for (that direct apt did not ask the origin for in the same scenario). The goal is 1 / 0.\n\n")
	p("| target |")
	for _, sc := range res.Scenarios {
		p(" %s |", sc.Title)
	}
	p("\n|---|%s\n", strings.Repeat("---|", len(res.Scenarios)))
	var notes []string
	for _, t := range trs {
		p("| %s |", t.Kind)
		for _, sc := range res.Scenarios {
			a := t.apt(sc.ID)
			if a == nil || a.Audit == nil {
				p(" — |")
				continue
			}
			au := a.Audit
			gets, unasked := fmt.Sprint(au.MaxGETs), "—"
			if au.MaxGETs > 1 {
				gets = "**" + gets + "**"
				notes = append(notes, fmt.Sprintf("- %s, %s: `%s` served %d times in one run; %d files served more than once", t.Kind, sc.Title, au.MaxFile, au.MaxGETs, au.Repeated))
			}
			if au.Unasked >= 0 {
				unasked = fmt.Sprint(au.Unasked)
			}
			if au.Unasked > 0 {
				unasked = "**" + unasked + "**"
				notes = append(notes, fmt.Sprintf("- %s, %s: %d files no client asked for, e.g. `%s`", t.Kind, sc.Title, au.Unasked, au.UnaskedExample))
			}
			p(" %s / %s |", gets, unasked)
		}
		p("\n")
	}
	if len(notes) > 0 {
		p("\n%s\n", strings.Join(notes, "\n"))
	}
}

func warmText(a *AptResult) string {
	if a.Warm == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a.Warm)
}

func warmOrigin(a *AptResult) string {
	if a.Warm == 0 {
		return "—"
	}
	return fmt.Sprintf("%d (%d) / %.1f", a.WarmOriginGETs, a.WarmOriginDebs, a.WarmOriginMB)
}

// directLinkMB is what the direct target's last cold run of scenario id
// drew through the relay.
func directLinkMB(res *Results, id string) float64 {
	if a := find(res, "direct").apt(id); a != nil {
		return a.ColdLinkMB
	}
	return 0
}

type goal struct{ issue, goal, measured, met string }

// goals checks issue 2's and issue 13's targets against the run.
func goals(res *Results) []goal {
	ps, acng, direct, ngx := find(res, "pkgswarm"), find(res, "apt-cacher-ng"), find(res, "direct"), find(res, "nginx")
	var out []goal
	if ps == nil {
		return out
	}
	add := func(issue, g, measured string, ok bool) { out = append(out, goal{issue, g, measured, met(ok)}) }
	scenario := func(id string) (ScenarioInfo, bool) {
		for _, sc := range res.Scenarios {
			if sc.ID == id {
				return sc, true
			}
		}
		return ScenarioInfo{}, false
	}
	// vsDirect compares pkgswarm's cold median in scenario id with
	// direct's: both medians, their ratio, and in how many paired runs
	// pkgswarm took at most f times direct's run; or ok false.
	vsDirect := func(id string, f float64) (ps, d, r float64, pairs string, ok bool) {
		a, da := find(res, "pkgswarm").apt(id), direct.apt(id)
		if a == nil || da == nil || len(a.Cold) == 0 || len(da.Cold) == 0 {
			return 0, 0, 0, "", false
		}
		return a.coldMedian(), da.coldMedian(), ratio(a.coldMedian(), da.coldMedian()), runsAtMost(a.Cold, da.Cold, f), true
	}

	// Hot hits (issue 2: >= apt-cacher-ng; issue 13: >= 0.98x nginx too).
	for _, n := range hotClients {
		s, okS := ps.hot(n)
		if !okS {
			continue
		}
		var parts []string
		ok := true
		if ngx != nil {
			if c, okC := ngx.hot(n); okC {
				parts = append(parts, fmt.Sprintf("%.2fx nginx (%.0f%s)", ratio(s.MBps, c.MBps), c.MBps, roundsAtLeast(s.Round, c.Round, 0.98)))
				ok = ok && s.MBps >= 0.98*c.MBps
			}
		}
		if acng != nil {
			if a, okA := acng.hot(n); okA {
				parts = append(parts, fmt.Sprintf("%.2fx apt-cacher-ng (%.0f%s)", ratio(s.MBps, a.MBps), a.MBps, roundsAtLeast(s.Round, a.Round, 1)))
				ok = ok && s.MBps >= a.MBps
			}
		}
		if len(parts) == 0 {
			continue
		}
		add("2, 13", fmt.Sprintf("hot large file at %s: >= 0.98x nginx and >= 1.0x apt-cacher-ng (median of %d rounds)", clients(n), s.Rounds),
			fmt.Sprintf("%.0f MB/s: %s", s.MBps, strings.Join(parts, ", ")), ok)
	}
	// Small hot file.
	for _, n := range smallClients {
		s, okS := ps.small(n)
		if !okS {
			continue
		}
		if ngx != nil {
			if c, okC := ngx.small(n); okC {
				add("13", fmt.Sprintf("small hot file at %s: >= 0.9x nginx req/s, p99 latency <= nginx's", clients(n)),
					fmt.Sprintf("%.0f vs %.0f req/s (%.2fx%s); p99 %.2f vs %.2f ms", s.RPS, c.RPS, ratio(s.RPS, c.RPS), roundsAtLeast(s.Round, c.Round, 0.9), s.P99ms, c.P99ms),
					s.RPS >= 0.9*c.RPS && s.P99ms <= c.P99ms)
			}
		}
		if acng != nil {
			if a, okA := acng.small(n); okA {
				add("2", fmt.Sprintf("small hot file at %s: >= 8x apt-cacher-ng req/s", clients(n)),
					fmt.Sprintf("%.0f vs %.0f req/s (%.1fx)", s.RPS, a.RPS, ratio(s.RPS, a.RPS)), s.RPS >= 8*a.RPS)
			}
		}
	}
	// Cold apt runs.
	if s, d, r, pairs, ok := vsDirect(scLoopback, 1.05); ok {
		add("2", "cold update + download of the main set within 5% of direct (loopback origin)",
			fmt.Sprintf("%.2f s vs %.2f s (%.2fx%s)", s, d, r, pairs), r <= 1.05)
	}
	if s, d, r, pairs, ok := vsDirect(scPaced, 1.05); ok {
		sc, _ := scenario(scPaced)
		add("2", fmt.Sprintf("cold update + download of the main set within 5%% of direct (each response paced to %.0f MB/s)", float64(sc.ResponseRate)/1e6),
			fmt.Sprintf("%.2f s vs %.2f s (%.2fx%s)", s, d, r, pairs), r <= 1.05)
	}
	if s, d, r, pairs, ok := vsDirect(scUpgrade, 1); ok {
		sc, _ := scenario(scUpgrade)
		add("13", fmt.Sprintf("scenario 1, many small files (%d packages), loopback origin: cold <= 1.00x direct", sc.Packages),
			fmt.Sprintf("%.2f s vs %.2f s (%.2fx%s)", s, d, r, pairs), r <= 1.00)
	}
	if s, d, r, pairs, ok := vsDirect(scRTT, 1); ok {
		sc, _ := scenario(scRTT)
		add("13", fmt.Sprintf("scenario 2, origin %.0f ms away (%.0f ms RTT): cold <= 1.00x direct", sc.DelayMS, 2*sc.DelayMS),
			fmt.Sprintf("%.2f s vs %.2f s (%.2fx%s)", s, d, r, pairs), r <= 1.00)
		if sc.LimitS > 0 {
			add("13", "scenario 2: cold within 5% of the uplink's own limit for the bytes",
				fmt.Sprintf("%.2f s vs a limit of %.2f s (%.2fx; direct %.2fx)", s, sc.LimitS, ratio(s, sc.LimitS), ratio(d, sc.LimitS)), s <= 1.05*sc.LimitS)
		}
	}
	if s, d, r, pairs, ok := vsDirect(scConnPaced, 0.6); ok {
		sc, _ := scenario(scConnPaced)
		add("13", fmt.Sprintf("scenario 3, origin paces each connection to %.0f MB/s: cold <= 0.6x direct", float64(sc.ConnRate)/1e6),
			fmt.Sprintf("%.2f s vs %.2f s (%.2fx%s)", s, d, r, pairs), r <= 0.6)
	}
	if g, ok := auditGoal(res, ps); ok {
		out = append(out, g)
	}
	// Resources.
	if peak := ps.peakAny(); peak > 0 {
		m := fmt.Sprintf("%.1f MiB (at 16 clients %.1f MiB)", mib(peak), mib(ps.PeakRSS16))
		if acng != nil && acng.PeakRSSAll > 0 {
			m += fmt.Sprintf("; apt-cacher-ng %.1f MiB", mib(acng.peakAny()))
		}
		add("2, 13", "peak RSS <= 64 MiB throughout (every instance, whole life)", m, peak <= 64<<20)
	}
	if acng != nil && ps.cpuPerGB() > 0 && acng.cpuPerGB() > 0 {
		add("13", "CPU seconds per GB served hot <= apt-cacher-ng's",
			fmt.Sprintf("%.2f vs %.2f s/GB (%.2fx)", ps.cpuPerGB(), acng.cpuPerGB(), ratio(ps.cpuPerGB(), acng.cpuPerGB())), ps.cpuPerGB() <= acng.cpuPerGB())
	}
	return out
}

// auditGoal sums t's origin audits over every scenario into one goal row.
func auditGoal(res *Results, t *TargetResult) (goal, bool) {
	maxGETs, unasked, runs, ok := 0, -1, 0, true
	var worstGETs, worstUnasked string
	for _, sc := range res.Scenarios {
		au := t.apt(sc.ID)
		if au == nil || au.Audit == nil {
			continue
		}
		a := au.Audit
		runs += a.Runs
		ok = ok && a.ok()
		if a.MaxGETs > maxGETs {
			maxGETs, worstGETs = a.MaxGETs, ""
			if a.MaxGETs > 1 {
				worstGETs = fmt.Sprintf(" (`%s`, %s)", a.MaxFile, sc.Title)
			}
		}
		if a.Unasked > unasked {
			unasked = a.Unasked
			if a.Unasked > 0 {
				worstUnasked = fmt.Sprintf(" (e.g. `%s`, %s)", a.UnaskedExample, sc.Title)
			}
		}
	}
	if runs == 0 {
		return goal{}, false
	}
	m := fmt.Sprintf("at most %d GET(s) per file%s; ", maxGETs, worstGETs)
	if unasked < 0 {
		m += "files not asked for: unknown (no direct runs)"
	} else {
		m += fmt.Sprintf("%d file(s) no client asked for%s", unasked, worstUnasked)
	}
	m += fmt.Sprintf(", over %d cold runs", runs)
	return goal{"13", "the origin serves each file at most once, and never a file no client asked for (every cold run of every scenario)", m, met(ok)}, true
}

func clients(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
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
	files, script := plotData(res)
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plots.gp"), []byte(script), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("gnuplot", "plots.gp")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w\n%s", err, out)
	}
	return nil
}

// plotData returns the plots' data files, by name, and the gnuplot script
// that draws them.
func plotData(res *Results) (map[string][]byte, string) {
	var hot, small, rss bytes.Buffer
	hot.WriteString("# target c1 c4 c16\n")
	small.WriteString("# target")
	for _, n := range smallClients {
		fmt.Fprintf(&small, " c%d", n)
	}
	small.WriteString("\n")
	rss.WriteString("# target peak peak16 peak-any\n")
	for _, t := range res.Targets {
		if len(t.Hot) > 0 {
			fmt.Fprintf(&hot, "%q", t.Kind)
			for _, n := range hotClients {
				r, _ := t.hot(n)
				fmt.Fprintf(&hot, " %.1f", r.MBps)
			}
			hot.WriteString("\n")
		}
		if len(t.Small) > 0 {
			fmt.Fprintf(&small, "%q", t.Kind)
			for _, n := range smallClients {
				r, _ := t.small(n)
				fmt.Fprintf(&small, " %.1f", r.RPS)
			}
			small.WriteString("\n")
		}
		if t.PeakRSS > 0 || t.PeakRSSAll > 0 {
			fmt.Fprintf(&rss, "%q %.2f %.2f %.2f\n", t.Kind, mib(t.PeakRSS), mib(t.PeakRSS16), mib(t.peakAny()))
		}
	}
	files := map[string][]byte{"hot.dat": hot.Bytes(), "small.dat": small.Bytes(), "rss.dat": rss.Bytes()}

	// The apt plot: one panel per scenario, cold and warm per target.
	var panels []ScenarioInfo
	trs := aptTargets(res)
	for _, sc := range res.Scenarios {
		var d bytes.Buffer
		d.WriteString("# target cold warm\n")
		rows := 0
		for _, t := range trs {
			if a := t.apt(sc.ID); a != nil && len(a.Cold) > 0 {
				fmt.Fprintf(&d, "%q %.3f %.3f\n", t.Kind, a.coldMedian(), a.Warm)
				rows++
			}
		}
		if rows > 0 {
			files["apt-"+sc.ID+".dat"] = d.Bytes()
			panels = append(panels, sc)
		}
	}
	var script strings.Builder
	script.WriteString(gnuplotScript)
	if len(panels) > 0 {
		fmt.Fprintf(&script, "\nset terminal pngcairo size %d,480 font \"DejaVu Sans,10\"\n", 120+290*len(panels))
		script.WriteString("set output \"bench-apt.png\"\n")
		fmt.Fprintf(&script, "set multiplot layout 1,%d title \"apt-get update + download, cold and warm, per scenario (seconds, lower is better)\"\n", len(panels))
		script.WriteString("set ylabel \"seconds\"\nset key inside top left vertical\nset xtics rotate by 30 right\n")
		for i, sc := range panels {
			fmt.Fprintf(&script, "set title %q noenhanced\n", strings.ReplaceAll(sc.Title, ", ", "\n"))
			fmt.Fprintf(&script, "plot \"apt-%s.dat\" using 2:xtic(1) title \"cold\", \"\" using 3 title \"warm\"\n", sc.ID)
			if i == 0 {
				script.WriteString("unset key\nunset ylabel\n")
			}
		}
		script.WriteString("unset multiplot\n")
	}
	return files, script.String()
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

set output "bench-hot.png"
set title "Hot hits on the large file (higher is better)"
set ylabel "MB/s, all clients together"
plot "hot.dat" using 2:xtic(1) title "1 client", "" using 3 title "4 clients", "" using 4 title "16 clients"

set output "bench-small.png"
set title "Small file over kept-alive connections (higher is better)"
set ylabel "requests/s"
set logscale y
set yrange [1:*]
plot "small.dat" using 2:xtic(1) title "1 client", "" using 3 title "16 clients"
unset logscale y
set yrange [0:*]

set output "bench-rss.png"
set title "Peak resident memory of the server's process tree (lower is better)"
set ylabel "MiB"
plot "rss.dat" using 2:xtic(1) title "loopback instance", "" using 3 title "16 clients", "" using 4 title "any instance"
`

func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return pkg + " " + strings.TrimSpace(string(out))
}

// roundsAtLeast says in how many of the rounds both targets ran the step
// a's rate was at least f times b's, as "; 5 of 7 rounds at 0.98x or more":
// a target at its line wins about half of the rounds, one past it nearly
// all of them.
func roundsAtLeast(a, b []float64, f float64) string {
	return pairsAt(a, b, func(x, y float64) bool { return x >= f*y }, fmt.Sprintf("rounds at %gx or more", f))
}

// runsAtMost says in how many of the rounds both targets ran a's cold run
// took at most f times b's, as "; 2 of 3 paired runs at 1x or less". Run i
// of every target goes in round i; a target stops its runs at its first
// failure, so the pairs are the common prefix.
func runsAtMost(a, b []float64, f float64) string {
	return pairsAt(a, b, func(x, y float64) bool { return x <= f*y }, fmt.Sprintf("paired runs at %gx or less", f))
}

// pairsAt counts the pairs a[i], b[i] (measured in the same round, so on the
// same state of the machine) for which at holds, leaving out a pair with a
// 0 (a step that failed), as "; k of n what"; "" when there is no pair.
func pairsAt(a, b []float64, at func(x, y float64) bool, what string) string {
	n, k := 0, 0
	for i := range min(len(a), len(b)) {
		if a[i] == 0 || b[i] == 0 {
			continue
		}
		n++
		if at(a[i], b[i]) {
			k++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of %d %s", k, n, what)
}
