package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/bench/load"
	"github.com/pkgswarm/pkgswarm/bench/origin"
	"github.com/pkgswarm/pkgswarm/bench/procstat"
	"github.com/pkgswarm/pkgswarm/bench/target"
	"github.com/pkgswarm/pkgswarm/internal/aptenv"
)

// Bounds of every step: a count and a time limit each.
const (
	aptTimeout     = 5 * time.Minute
	hotMaxRequests = 400    // per step; 400 × 72 MB is far more than a step can move in its time
	smallMaxReqs   = 200000 // per step
	herdTimeout    = 2 * time.Minute
	idleTimeout    = 5 * time.Second // for the origin to finish its answers before they are counted
	tamperVictim   = "hello"
)

var (
	hotClients   = []int{1, 4, 16}
	smallClients = []int{1, 16}
)

type bench struct {
	cfg  config
	fx   *fixture.Fixture // the main set
	up   *fixture.Fixture // the many-small-files set
	work string
	log  *slog.Logger
	orig *origin.Server // serves fx
	seq  int            // numbers work directories
}

// site is where a scenario's apt clients and proxies reach a fixture: the
// origin serving it, straight or through a relay.
type site struct {
	fx    *fixture.Fixture
	orig  *origin.Server
	relay *origin.Relay // nil: straight to the origin
}

// url is the origin's URL as the targets and direct apt use it.
func (s site) url() string {
	if s.relay != nil {
		return s.relay.URL
	}
	return s.orig.URL
}

// scenario is one scenario to run.
type scenario struct {
	info ScenarioInfo
	site site
	// setup makes the origin behave as the scenario says and returns what
	// undoes it; nil for nothing to do.
	setup func() (undo func())
}

func (b *bench) all(ctx context.Context, specs []spec) (*Results, error) {
	res := &Results{Started: time.Now().UTC(), Machine: machine(), Settings: Settings{
		Runs: b.cfg.runs, Reps: b.cfg.reps, HotTime: b.cfg.hotTime.Seconds(), SmallTime: b.cfg.smallTime.Seconds(),
		Herd: b.cfg.herd, HerdRate: b.cfg.herdRate, PacedRate: b.cfg.pacedRate,
		RTTDelay: float64(b.cfg.rttDelay) / float64(time.Millisecond), UplinkRate: b.cfg.uplinkRate, ConnRate: b.cfg.connRate,
	}}
	big, small := b.fx.Largest(), b.fx.SmallFile()
	res.Fixture = FixtureInfo{ID: b.fx.ID, Synthetic: b.fx.Synthetic, Packages: len(b.fx.Debs), Bytes: b.fx.TotalBytes(),
		Largest: big.Name, LargeSize: big.Size, Small: small.Name, SmallSize: small.Size}
	var err error
	if b.orig, err = origin.Start(b.fx.Dir); err != nil {
		return nil, err
	}
	defer b.orig.Close()
	b.log.Info("origin serving the fixture", "url", b.orig.URL, "packages", len(b.fx.Debs), "MB", b.fx.TotalBytes()/1e6)
	scenarios, closeScenarios, err := b.scenarios()
	if err != nil {
		return nil, err
	}
	defer closeScenarios()
	specOf := map[*TargetResult]spec{}
	for _, sp := range specs {
		tr := &TargetResult{Kind: sp.label, Apt: map[string]*AptResult{}}
		res.Targets = append(res.Targets, tr)
		specOf[tr] = sp
	}
	// Phase 1: the loopback scenario, whose last instances stay up for
	// phase 2, with nginx beside them.
	live := b.scenario(ctx, scenarios[0], res.Targets, specOf, true)
	defer func() {
		for tr, t := range live {
			b.stop(tr, t)
		}
	}()
	for _, tr := range res.Targets {
		if sp := specOf[tr]; !sp.kind.Apt() && ctx.Err() == nil {
			b.step(tr, "start", func() error {
				t, err := b.start(ctx, sp, scenarios[0].site)
				if err == nil {
					live[tr], tr.Version = t, t.Version
				}
				return err
			})
		}
	}
	// Phase 2, all targets up at once: hot and small steps in rounds that
	// go round the targets, so that a change in the machine's load is
	// shared by all of them rather than landing on one.
	b.rounds(ctx, res.Targets, live)
	for _, tr := range res.Targets {
		t := live[tr]
		if t == nil {
			continue
		}
		if t.PID != 0 {
			if cpu, err := procstat.TreeCPU(t.PID); err == nil {
				tr.CPU = cpu.Seconds()
			}
			if _, hwm, err := procstat.TreeMemory(t.PID); err == nil {
				tr.PeakRSS = max(tr.PeakRSS, hwm)
			}
		}
		if t.Kind.Apt() {
			tr.Offline = b.offline(ctx, t)
		}
		b.stop(tr, t)
		delete(live, tr)
	}
	// Phase 3, fresh instances: the other scenarios, then per target the
	// herd and the tamper check.
	for _, sc := range scenarios[1:] {
		if ctx.Err() != nil {
			break
		}
		b.scenario(ctx, sc, res.Targets, specOf, false)
	}
	for _, sc := range scenarios {
		res.Scenarios = append(res.Scenarios, sc.info)
	}
	b.limits(res)
	for _, tr := range res.Targets {
		sp := specOf[tr]
		if !sp.kind.Apt() || !sp.kind.Holds() || ctx.Err() != nil {
			continue
		}
		b.step(tr, "herd", func() error { return b.herd(ctx, sp, tr) })
		b.step(tr, "tamper", func() error { return b.tamper(ctx, sp, tr) })
	}
	res.Machine.LoadAfter = loadavg()
	res.Duration = time.Since(res.Started)
	return res, ctx.Err()
}

// scenarios lays out the scenarios -scenarios asks for, the loopback one
// first: it starts the many-small-files set's origin and the relay if
// they are needed, and returns what stops them.
func (b *bench) scenarios() ([]scenario, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	main := site{fx: b.fx, orig: b.orig}
	setInfo := func(id, title, what string, fx *fixture.Fixture) ScenarioInfo {
		set := string(fixture.Main)
		if fx == b.up {
			set = string(fixture.Upgrade)
		}
		return ScenarioInfo{ID: id, Title: title, What: what, Set: set, FixtureID: fx.ID, Packages: len(fx.Debs), Bytes: fx.TotalBytes()}
	}
	mb := func(r int64) string { return fmt.Sprintf("%g MB/s", float64(r)/1e6) }
	out := []scenario{{
		info: setInfo(scLoopback, fmt.Sprintf("%d packages, loopback", len(b.fx.Debs)),
			fmt.Sprintf("the main set (%d packages, %.1f MB) from an origin on loopback", len(b.fx.Debs), float64(b.fx.TotalBytes())/1e6), b.fx),
		site: main,
	}}
	want := map[string]bool{}
	for _, id := range b.cfg.scenarios {
		want[id] = true
	}
	if want[scPaced] && b.cfg.pacedRate > 0 {
		sc := scenario{info: setInfo(scPaced, fmt.Sprintf("%d packages, %s per response", len(b.fx.Debs), mb(b.cfg.pacedRate)),
			fmt.Sprintf("the main set with every origin response paced to %s (%.0f Mbit/s), as behind a WAN link", mb(b.cfg.pacedRate), float64(b.cfg.pacedRate)*8/1e6), b.fx),
			site: main, setup: func() func() {
				b.orig.Throttle("", b.cfg.pacedRate)
				return func() { b.orig.Throttle("", 0) }
			}}
		sc.info.ResponseRate = b.cfg.pacedRate
		out = append(out, sc)
	}
	var up site
	if want[scUpgrade] || want[scRTT] || want[scConnPaced] {
		o, err := origin.Start(b.up.Dir)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { o.Close() })
		up = site{fx: b.up, orig: o}
		b.log.Info("origin serving the many-small-files set", "url", o.URL, "packages", len(b.up.Debs), "MB", b.up.TotalBytes()/1e6)
	}
	if b.up == nil {
		return out, closeAll, nil
	}
	n, size := len(b.up.Debs), float64(b.up.TotalBytes())/1e6
	if want[scUpgrade] {
		out = append(out, scenario{info: setInfo(scUpgrade, fmt.Sprintf("%d small packages, loopback", n),
			fmt.Sprintf("the many-small-files set (%d packages, %.1f MB) from an origin on loopback", n, size), b.up), site: up})
	}
	if want[scRTT] && b.cfg.rttDelay > 0 {
		link := origin.Link{Delay: b.cfg.rttDelay, Rate: b.cfg.uplinkRate}
		r, err := origin.StartRelay(up.orig.Addr, link)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		closers = append(closers, func() { r.Close() })
		far := up
		far.relay = r
		uplink := "unlimited"
		if link.Rate > 0 {
			uplink = fmt.Sprintf("%s (%g Mbit/s)", mb(link.Rate), float64(link.Rate)*8/1e6)
		}
		sc := scenario{info: setInfo(scRTT, fmt.Sprintf("%d small packages, %s RTT", n, ms(link.RTT())),
			fmt.Sprintf("the many-small-files set from an origin %s away one way (%s RTT) through a relay, uplink rate %s", ms(link.Delay), ms(link.RTT()), uplink), b.up), site: far}
		sc.info.DelayMS, sc.info.UplinkRate = float64(link.Delay)/float64(time.Millisecond), link.Rate
		out = append(out, sc)
		b.log.Info("relay in front of the many-small-files origin", "url", r.URL, "delay", link.Delay, "rate", link.Rate)
	}
	if want[scConnPaced] && b.cfg.connRate > 0 {
		o := up.orig
		sc := scenario{info: setInfo(scConnPaced, fmt.Sprintf("%d small packages, %s per connection", n, mb(b.cfg.connRate)),
			fmt.Sprintf("the many-small-files set from an origin on loopback that paces each connection to %s, as many public mirrors and CDNs do", mb(b.cfg.connRate)), b.up),
			site: up, setup: func() func() {
				o.PaceConnections(b.cfg.connRate)
				return func() { o.PaceConnections(0) }
			}}
		sc.info.ConnRate = b.cfg.connRate
		out = append(out, sc)
	}
	return out, closeAll, nil
}

// rotated is the order of the targets in round i: round i starts at
// target i (modulo their number), so that over the rounds every target runs
// at every place. Which place a run has matters on this kind of machine: a
// run that follows another target's run can find the file system slower
// (its deletions; see docs/benchmarks.md), and with a fixed order one
// target always came last.
func rotated[T any](ts []T, i int) []T {
	if len(ts) == 0 {
		return nil
	}
	k := i % len(ts)
	return append(append(make([]T, 0, len(ts)), ts[k:]...), ts[:k]...)
}

// ms writes d in milliseconds, "20 ms".
func ms(d time.Duration) string { return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond)) }

// scenario runs sc for every target but nginx: b.cfg.runs cold runs in
// rounds that go round the targets (run 1 of every target, then run 2...,
// each round starting one target further: rotated), so that a change in
// the shared machine's load falls on all of them alike, a fresh instance
// each; then a warm run through each target's
// last instance, and the audit of what the origin served. With keep the
// last instances of the kinds that hold files stay up and are returned;
// else they are stopped.
func (b *bench) scenario(ctx context.Context, sc scenario, trs []*TargetResult, specOf map[*TargetResult]spec, keep bool) map[*TargetResult]*target.Target {
	id := sc.info.ID
	if sc.setup != nil {
		undo := sc.setup()
		defer undo()
	}
	live := map[*TargetResult]*target.Target{}
	failed := map[*TargetResult]bool{}
	served := map[*TargetResult][]map[string]int{}
	for i := range b.cfg.runs {
		for _, tr := range rotated(trs, i) {
			sp := specOf[tr]
			if !sp.kind.Apt() || failed[tr] || ctx.Err() != nil {
				continue
			}
			if tr.Apt[id] == nil {
				tr.Apt[id] = &AptResult{}
			}
			b.stop(tr, live[tr])
			delete(live, tr)
			t, err := b.start(ctx, sp, sc.site)
			if err == nil {
				live[tr] = t
				tr.Version = t.Version
				var files map[string]int
				files, err = b.cold(ctx, sc, t, tr, i)
				served[tr] = append(served[tr], files)
			}
			if err != nil {
				b.step(tr, "cold ("+id+")", func() error { return err })
				failed[tr] = true
			}
		}
	}
	for _, tr := range trs {
		t := live[tr]
		if t != nil && !failed[tr] && ctx.Err() == nil {
			b.step(tr, "warm ("+id+")", func() error { return b.warm(ctx, sc, t, tr) })
		}
		if t != nil && (failed[tr] || !keep || !t.Kind.Holds()) {
			b.stop(tr, t)
			delete(live, tr)
		}
	}
	// What clients asked for: what direct apt asked the origin for.
	var asked map[string]bool
	for _, tr := range trs {
		if specOf[tr].kind == target.Direct && len(served[tr]) > 0 {
			asked = map[string]bool{}
			for _, files := range served[tr] {
				for p := range files {
					asked[p] = true
				}
			}
		}
	}
	for _, tr := range trs {
		if len(served[tr]) > 0 {
			tr.Apt[id].Audit = audit(served[tr], asked)
		}
	}
	return live
}

// limits computes each far scenario's uplink limit from the direct
// target's runs.
func (b *bench) limits(res *Results) {
	direct := find(res, string(target.Direct))
	for i := range res.Scenarios {
		sc := &res.Scenarios[i]
		if sc.DelayMS <= 0 {
			continue
		}
		d := direct.apt(sc.ID)
		if d == nil || d.ColdLinkMB == 0 {
			continue
		}
		rtt := 2 * time.Duration(sc.DelayMS*float64(time.Millisecond))
		loop := direct.apt(scUpgrade).coldMedian()
		if sc.UplinkRate == 0 && loop == 0 {
			continue
		}
		sc.LimitS = uplinkLimit(rtt, sc.UplinkRate, int64(d.ColdLinkMB*1e6), loop)
	}
}

// step runs one phase, recording its failure instead of ending the run.
func (b *bench) step(tr *TargetResult, name string, fn func() error) {
	if err := fn(); err != nil {
		b.log.Error("phase failed", "target", tr.Kind, "phase", name, "err", err)
		tr.Errors = append(tr.Errors, name+": "+firstLine(err.Error()))
	}
}

// spec is one target as -targets names it: a kind and, for pkgswarm,
// extra serve arguments after '+' ("pkgswarm+--hold=1ms"), which become
// part of its row's name.
type spec struct {
	kind  target.Kind
	args  []string
	label string
}

// parseSpecs parses -targets: comma-separated kinds, each optionally
// followed by "+ARG" pkgswarm arguments.
func parseSpecs(list string) ([]spec, error) {
	var out []spec
	seen := map[string]bool{}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, "+")
		sp := spec{kind: target.Kind(parts[0]), args: parts[1:], label: strings.Join(parts, " ")}
		switch sp.kind {
		case target.Direct, target.Pkgswarm, target.AptCacherNG, target.Approx, target.Nginx, target.NginxProxy:
		default:
			return nil, fmt.Errorf("-targets: unknown target %q (want direct, pkgswarm, apt-cacher-ng, approx, nginx or nginx-proxy)", parts[0])
		}
		if len(sp.args) > 0 && sp.kind != target.Pkgswarm {
			return nil, fmt.Errorf("-targets: %q: only pkgswarm takes extra arguments", item)
		}
		if seen[sp.label] {
			return nil, fmt.Errorf("-targets: %q is listed twice", item)
		}
		seen[sp.label] = true
		out = append(out, sp)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-targets names no target")
	}
	return out, nil
}

// start starts a fresh instance of sp in a new work directory, in front
// of st.
func (b *bench) start(ctx context.Context, sp spec, st site) (*target.Target, error) {
	b.seq++
	dir := filepath.Join(b.work, fmt.Sprintf("%02d-%s", b.seq, sp.kind))
	args := append(strings.Fields(b.cfg.pkgswarmArgs), sp.args...)
	return target.Start(ctx, target.Options{Kind: sp.kind, WorkDir: dir, Origin: st.url(), FixtureDir: st.fx.Dir,
		Keyring: st.fx.KeyringPath, PkgswarmBin: b.cfg.pkgswarm, PkgswarmArgs: args})
}

// stop stops t (nil does nothing), first taking its process tree's peak
// resident size into tr.PeakRSSAll.
func (b *bench) stop(tr *TargetResult, t *target.Target) {
	if t == nil {
		return
	}
	if t.PID != 0 {
		if _, hwm, err := procstat.TreeMemory(t.PID); err == nil {
			tr.PeakRSSAll = max(tr.PeakRSSAll, hwm)
		}
	}
	t.Stop()
}

// aptClient makes a fresh isolated apt client that reaches fx through t.
func (b *bench) aptClient(t *target.Target, fx *fixture.Fixture) (*aptenv.Client, error) {
	b.seq++
	dir := filepath.Join(b.work, fmt.Sprintf("%02d-apt", b.seq))
	return aptenv.NewDir(dir, aptenv.Options{
		Proxy:   t.Proxy,
		Sources: []aptenv.Source{{URL: t.Base, Suite: fx.Suite, Components: []string{fx.Component}, Keyring: fx.KeyringPath}},
		Config:  []string{`Acquire::http::Timeout "60";`},
	})
}

// aptTime is one apt run's wall time, in seconds.
type aptTime struct{ update, download float64 }

func (a aptTime) total() float64 { return a.update + a.download }

// aptRun updates and downloads every package of fx, checks every .deb's
// digest, and returns the wall times.
func (b *bench) aptRun(ctx context.Context, c *aptenv.Client, fx *fixture.Fixture) (aptTime, error) {
	ctx, cancel := context.WithTimeout(ctx, aptTimeout)
	defer cancel()
	var d aptTime
	t0 := time.Now()
	if _, err := c.Update(ctx); err != nil {
		return d, err
	}
	t1 := time.Now()
	d.update = t1.Sub(t0).Seconds()
	if _, err := c.Download(ctx, fx.Names()...); err != nil {
		return d, err
	}
	d.download = time.Since(t1).Seconds()
	got, err := c.Archives()
	if err != nil {
		return d, err
	}
	want := map[string]string{}
	for _, deb := range fx.Debs {
		want[deb.AptFileName()] = deb.SHA256
	}
	if len(got) != len(want) {
		return d, fmt.Errorf("apt downloaded %d packages, want %d", len(got), len(want))
	}
	for name, sum := range got {
		if want[name] != sum {
			return d, fmt.Errorf("apt downloaded %s with sha256 %s, want %s", name, sum, want[name])
		}
	}
	return d, nil
}

// cold measures cold run i of sc on t, a fresh instance, and returns
// what the origin served, file by file.
func (b *bench) cold(ctx context.Context, sc scenario, t *target.Target, tr *TargetResult, i int) (map[string]int, error) {
	c, err := b.aptClient(t, sc.site.fx)
	if err != nil {
		return nil, err
	}
	o, r := sc.site.orig, sc.site.relay
	o.WaitIdle(idleTimeout) // the last instance's requests, cut when it stopped
	o.ResetLog()
	if r != nil {
		r.ResetStats()
	}
	cpu0, cpuErr := treeCPU(t)
	d, err := b.aptRun(ctx, c, sc.site.fx)
	if err != nil {
		return nil, fmt.Errorf("cold run %d: %w", i+1, err)
	}
	cpu1, cpuErr1 := treeCPU(t)
	o.WaitIdle(idleTimeout)
	ar := tr.Apt[sc.info.ID]
	cpu := "-"
	if cpuErr == nil && cpuErr1 == nil {
		ar.ColdCPU = append(ar.ColdCPU, (cpu1 - cpu0).Seconds())
		cpu = fmt.Sprintf("%.3f", (cpu1 - cpu0).Seconds())
	}
	ar.Cold = append(ar.Cold, d.total())
	ar.ColdUpdate = append(ar.ColdUpdate, d.update)
	ar.ColdDownload = append(ar.ColdDownload, d.download)
	n, by := o.Count("")
	ar.ColdOriginGETs, ar.ColdOriginMB, ar.ColdOriginConns = n, float64(by)/1e6, o.Conns()
	if r != nil {
		ar.ColdLinkMB = float64(r.Stats().Down) / 1e6
	}
	b.log.Info("cold run", "scenario", sc.info.ID, "target", tr.Kind, "run", i+1, "update_s", fmt.Sprintf("%.2f", d.update),
		"download_s", fmt.Sprintf("%.2f", d.download), "cpu_s", cpu, "origin_gets", n, "origin_conns", ar.ColdOriginConns)
	return o.Files(), nil
}

// treeCPU is the CPU time of t's process tree so far; an error for a target
// without a process (direct).
func treeCPU(t *target.Target) (time.Duration, error) {
	if t.PID == 0 {
		return 0, errors.New("no process")
	}
	return procstat.TreeCPU(t.PID)
}

// warm measures a second fresh client through t, which holds everything.
// In the loopback scenario it also takes the CPU time of t's tree so far.
func (b *bench) warm(ctx context.Context, sc scenario, t *target.Target, tr *TargetResult) error {
	c, err := b.aptClient(t, sc.site.fx)
	if err != nil {
		return err
	}
	o := sc.site.orig
	o.WaitIdle(idleTimeout)
	o.ResetLog()
	d, err := b.aptRun(ctx, c, sc.site.fx)
	if err != nil {
		return fmt.Errorf("warm run: %w", err)
	}
	o.WaitIdle(idleTimeout)
	ar := tr.Apt[sc.info.ID]
	ar.Warm = d.total()
	if t.PID != 0 && sc.info.ID == scLoopback {
		if cpu, err := procstat.TreeCPU(t.PID); err == nil {
			tr.CPUApt = cpu.Seconds()
		}
	}
	n, by := o.Count("")
	ar.WarmOriginGETs, ar.WarmOriginMB = n, float64(by)/1e6
	ar.WarmOriginDebs, _ = o.Count(".deb")
	b.log.Info("warm run", "scenario", sc.info.ID, "target", tr.Kind, "update_s", fmt.Sprintf("%.2f", d.update),
		"download_s", fmt.Sprintf("%.2f", d.download), "origin_gets", n)
	return nil
}

// rounds runs the hot-hit and small-file steps on every live target:
// b.cfg.reps rounds, each going once round the targets for every client
// count, each step getting its share of the step's time limit. The peak
// RSS while 16 clients fetch is taken per step (VmHWM reset before it).
func (b *bench) rounds(ctx context.Context, trs []*TargetResult, live map[*TargetResult]*target.Target) {
	big, small := b.fx.Largest(), b.fx.SmallFile()
	// One fetch of each first: both are cached now (apt fetched them), and
	// a target that stores per URL form gets its entry.
	for _, tr := range trs {
		t := live[tr]
		if t == nil {
			continue
		}
		for _, d := range []fixture.Deb{big, small} {
			r, err := load.Run(ctx, load.Options{Client: t.Client(1), URL: t.URL("/" + d.Path), Clients: 1,
				MaxRequests: 1, MaxDuration: time.Minute, WantSize: d.Size, WantSHA256: d.SHA256})
			if err == nil && r.Requests != 1 {
				err = fmt.Errorf("first GET of %s: %s", d.Name, r.FirstErr)
			}
			if err != nil {
				b.step(tr, "hot and small", func() error { return err })
				delete(live, tr)
				b.stop(tr, t)
				break
			}
		}
	}
	type key struct {
		tr      *TargetResult
		hot     bool
		clients int
	}
	got := map[key][]load.Result{}
	reps := b.cfg.reps
	perRound := map[key][]float64{} // each round's rate, 0 where the step failed
	for rep := range reps {
		for _, hot := range []bool{true, false} {
			levels, d, limit, stepTime := hotClients, big, hotMaxRequests, b.cfg.hotTime/time.Duration(reps)
			if !hot {
				levels, d, limit, stepTime = smallClients, small, smallMaxReqs, b.cfg.smallTime/time.Duration(reps)
			}
			for _, n := range levels {
				for _, tr := range rotated(trs, rep) {
					t := live[tr]
					if t == nil || ctx.Err() != nil {
						continue
					}
					var sampler *procstat.Sampler
					if hot && n == 16 && t.PID != 0 {
						if _, hwm, err := procstat.TreeMemory(t.PID); err == nil {
							tr.PeakRSS = max(tr.PeakRSS, hwm)
						}
						procstat.ResetPeak(t.PID)
						sampler = procstat.Sample(t.PID, 20*time.Millisecond)
					}
					cpu0, cpuErr := time.Duration(0), errors.New("no process")
					if hot && t.PID != 0 {
						cpu0, cpuErr = procstat.TreeCPU(t.PID)
					}
					r, err := load.Run(ctx, load.Options{Client: t.Client(n), URL: t.URL("/" + d.Path), Clients: n,
						MaxRequests: limit, MaxDuration: stepTime, WantSize: d.Size})
					if cpuErr == nil && err == nil {
						if cpu1, err := procstat.TreeCPU(t.PID); err == nil {
							tr.HotCPU += (cpu1 - cpu0).Seconds()
							tr.HotGB += float64(r.Bytes) / 1e9
						}
					}
					if sampler != nil {
						peak := sampler.Stop()
						if _, hwm, err := procstat.TreeMemory(t.PID); err == nil {
							peak = max(peak, hwm)
						}
						tr.PeakRSS16 = max(tr.PeakRSS16, peak)
						tr.PeakRSS = max(tr.PeakRSS, peak)
					}
					if err != nil {
						continue
					}
					k := key{tr, hot, n}
					got[k] = append(got[k], r)
					what, v := "MB/s", r.MBps()
					if !hot {
						what, v = "req/s", r.RPS()
					}
					if perRound[k] == nil {
						perRound[k] = make([]float64, reps)
					}
					perRound[k][rep] = v
					b.log.Info("round", "rep", rep+1, "target", tr.Kind, "file", d.Name, "clients", n, what, fmt.Sprintf("%.0f", v), "errors", r.Errors)
				}
			}
		}
	}
	for _, tr := range trs {
		for _, n := range hotClients {
			if rs := got[key{tr, true, n}]; len(rs) > 0 {
				r := combine(rs)
				r.Round = perRound[key{tr, true, n}]
				tr.Hot = append(tr.Hot, r)
			}
		}
		for _, n := range smallClients {
			if rs := got[key{tr, false, n}]; len(rs) > 0 {
				r := combine(rs)
				r.Round = perRound[key{tr, false, n}]
				tr.Small = append(tr.Small, r)
			}
		}
	}
}

// combine sums the rounds of one step: the median round's rates, all the
// rounds' requests, errors and latencies.
func combine(rs []load.Result) Rate {
	var all load.Result
	var mbps, rps []float64
	for _, r := range rs {
		all.Clients = r.Clients
		all.Requests += r.Requests
		all.Errors += r.Errors
		all.Elapsed += r.Elapsed
		all.Latencies = append(all.Latencies, r.Latencies...)
		if all.FirstErr == "" {
			all.FirstErr = r.FirstErr
		}
		mbps = append(mbps, r.MBps())
		rps = append(rps, r.RPS())
	}
	out := rate(all)
	out.MBps, out.RPS, out.Rounds = median(mbps), median(rps), len(rs)
	return out
}

func rate(r load.Result) Rate {
	return Rate{Clients: r.Clients, Requests: r.Requests, Errors: r.Errors, Seconds: r.Elapsed.Seconds(),
		MBps: r.MBps(), RPS: r.RPS(), P50ms: percentile(r.Latencies, 0.5), P99ms: percentile(r.Latencies, 0.99),
		FirstErr: r.FirstErr}
}

// offline stops the origin and runs a fresh client's update and download
// through t, then restarts the origin.
func (b *bench) offline(ctx context.Context, t *target.Target) *OfflineResult {
	if t.Kind == target.Direct {
		return nil
	}
	res := &OfflineResult{Update: "not run", Download: "not run"}
	c, err := b.aptClient(t, b.fx)
	if err != nil {
		res.Update = err.Error()
		return res
	}
	b.orig.Close()
	defer func() {
		if err := b.orig.Restart(); err != nil {
			b.log.Error("origin did not restart", "err", err)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, aptTimeout)
	defer cancel()
	_, err = c.Update(ctx)
	res.Update = aptVerdict(err)
	if err != nil {
		return res
	}
	_, err = c.Download(ctx, b.fx.Names()...)
	res.Download = aptVerdict(err)
	return res
}

// herd releases the herd on a cold cache of a fresh instance, after one
// apt-get update so that every target knows the repository, with the
// origin paced so that the herd overlaps one download.
func (b *bench) herd(ctx context.Context, sp spec, tr *TargetResult) error {
	t, err := b.start(ctx, sp, site{fx: b.fx, orig: b.orig})
	if err != nil {
		return err
	}
	defer b.stop(tr, t)
	c, err := b.aptClient(t, b.fx)
	if err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, aptTimeout)
	_, err = c.Update(uctx)
	cancel()
	if err != nil {
		return fmt.Errorf("update before the herd: %w", err)
	}
	big := b.fx.Largest()
	p := "/" + big.Path
	b.orig.Throttle(p, b.cfg.herdRate)
	defer b.orig.Throttle(p, 0)
	b.orig.WaitIdle(idleTimeout)
	b.orig.ResetLog()
	clients, err := load.Herd(ctx, func() *http.Client { return t.Client(1) }, t.URL(p), b.cfg.herd, big.Size, big.SHA256, herdTimeout)
	if err != nil {
		return err
	}
	b.orig.WaitIdle(idleTimeout)
	h := &HerdResult{Clients: len(clients)}
	for _, c := range clients {
		if c.OK {
			h.OK++
		} else if h.FirstFailed == "" {
			h.FirstFailed = c.Err
		}
		h.SlowestS = max(h.SlowestS, c.Elapsed.Seconds())
	}
	n, by := b.orig.Count(p)
	h.OriginGETs, h.OriginMB = n, float64(by)/1e6
	tr.Herd = h
	b.log.Info("herd", "target", sp.label, "ok", h.OK, "of", h.Clients, "origin_gets", n)
	return nil
}

// tamper checks what t does with a .deb that the origin serves tampered
// (same size, one byte flipped), then after the origin is fixed.
func (b *bench) tamper(ctx context.Context, sp spec, tr *TargetResult) error {
	victim, ok := b.fx.Deb(tamperVictim)
	if !ok {
		victim = b.fx.SmallFile()
	}
	p := "/" + victim.Path
	good, err := os.ReadFile(filepath.Join(b.fx.Dir, filepath.FromSlash(victim.Path)))
	if err != nil {
		return err
	}
	flip := func(in []byte) []byte {
		out := append([]byte(nil), in...)
		out[len(out)/2] ^= 0xff
		return out
	}
	bad := flip(good)
	badSum := sha256.Sum256(bad)

	t, err := b.start(ctx, sp, site{fx: b.fx, orig: b.orig})
	if err != nil {
		return err
	}
	defer b.stop(tr, t)
	c, err := b.aptClient(t, b.fx)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, aptTimeout)
	defer cancel()
	if _, err := c.Update(actx); err != nil {
		return fmt.Errorf("update before the tamper: %w", err)
	}
	res := &TamperResult{}
	tr.Tamper = res
	b.orig.Tamper(p, flip)
	_, err = c.Download(actx, victim.Name)
	res.AptWhileTampered = aptVerdict(err)
	res.ServedWhile = served(ctx, t, p, good, bad)
	res.CachedTampered = holds(t.CacheDir, int64(len(bad)), hex.EncodeToString(badSum[:]))
	b.orig.Untamper(p)
	res.ServedAfterFix = served(ctx, t, p, good, bad)
	c2, err := b.aptClient(t, b.fx)
	if err != nil {
		return err
	}
	if _, err := c2.Update(actx); err != nil {
		res.AptAfterFix = "update: " + aptVerdict(err)
	} else {
		_, err = c2.Download(actx, victim.Name)
		res.AptAfterFix = aptVerdict(err)
	}
	b.log.Info("tamper", "target", sp.label, "apt", res.AptWhileTampered, "served", res.ServedWhile,
		"cached_tampered", res.CachedTampered, "after_fix", res.ServedAfterFix)
	return nil
}

// served says what t answers for p: the good bytes, the bad bytes, or a
// status.
func served(ctx context.Context, t *target.Target, p string, good, bad []byte) string {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL(p), nil)
	if err != nil {
		return err.Error()
	}
	resp, err := t.Client(1).Do(req)
	if err != nil {
		return "no response (" + firstLine(err.Error()) + ")"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(len(good))+1))
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	case err != nil:
		return fmt.Sprintf("body cut after %d bytes", len(body))
	case string(body) == string(good):
		return "correct bytes"
	case string(body) == string(bad):
		return "tampered bytes"
	}
	return fmt.Sprintf("other bytes (%d)", len(body))
}

// holds reports whether any file under dir has the given size and sha256.
func holds(dir string, size int64, sum string) bool {
	if dir == "" {
		return false
	}
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() != size {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil && hex.EncodeToString(h.Sum(nil)) == sum {
			found = true
		}
		return nil
	})
	return found
}

// aptVerdict turns an apt run's error into a short phrase.
func aptVerdict(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, aptenv.ErrHashSum):
		return "Hash Sum mismatch"
	case errors.Is(err, aptenv.ErrSignature):
		return "signature error"
	}
	var ae *aptenv.Error
	if errors.As(err, &ae) {
		if why := fetchFailure(ae.Output); why != "" {
			return why
		}
		if len(ae.Problems) > 0 {
			return "failed: " + clip(ae.Problems[0], 90)
		}
	}
	return "failed: " + clip(firstLine(err.Error()), 90)
}

// fetchFailure turns apt's first "E: Failed to fetch URL  STATUS  [IP: …]"
// line into "fetch failed: STATUS" (without the URL and address), or "".
func fetchFailure(out string) string {
	for line := range strings.SplitSeq(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "E: Failed to fetch ")
		if !ok {
			continue
		}
		_, status, _ := strings.Cut(rest, " ") // drop the URL
		status, _, _ = strings.Cut(status, "[IP:")
		status = strings.Join(strings.Fields(status), " ")
		if status == "" {
			return "fetch failed"
		}
		return "fetch failed: " + clip(status, 80)
	}
	return ""
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.MemTotal = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Apt = strings.TrimPrefix(debVersion("apt"), "apt ")
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
