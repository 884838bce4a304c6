package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/bench/target"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.out, "out", "bench/out", "directory for results.json, results.md and the plots")
	flag.StringVar(&cfg.cache, "cache", "bench/.cache", "fixture cache directory")
	flag.BoolVar(&cfg.synthetic, "synthetic", false, "use generated packages instead of real Debian ones")
	flag.StringVar(&cfg.pkgswarm, "pkgswarm", "", "pkgswarm binary (default: build ./cmd/pkgswarm into the work directory)")
	flag.StringVar(&cfg.targets, "targets", "direct,pkgswarm,apt-cacher-ng,approx,nginx,nginx-proxy",
		"targets to measure, comma-separated; pkgswarm+ARG+ARG... is pkgswarm with extra serve arguments, measured as a target of its own")
	flag.IntVar(&cfg.runs, "runs", 3, "cold runs per target (the median is reported)")
	flag.IntVar(&cfg.reps, "rounds", 7, "rounds of the hot-hit and small-file steps, each going round all targets")
	flag.DurationVar(&cfg.hotTime, "hot-time", 14*time.Second, "time limit of each hot-hit step per target and client count, split over the rounds")
	flag.DurationVar(&cfg.smallTime, "small-time", 7*time.Second, "time limit of each small-file step per target and client count, split over the rounds")
	flag.IntVar(&cfg.herd, "herd", 20, "clients in the thundering herd")
	flag.Int64Var(&cfg.herdRate, "herd-origin-rate", 50e6, "origin bytes/s for the herd's file, so the herd overlaps one slow download")
	flag.Int64Var(&cfg.pacedRate, "paced-origin-rate", 50e6, "origin bytes/s per response for the paced scenario (0: skip it)")
	flag.StringVar(&cfg.scenarioList, "scenarios", strings.Join(optionalScenarios, ","),
		"scenarios to run besides the loopback one, comma-separated: paced (main set, each response paced), upgrade (180 small packages), rtt (the same, origin far away), conn-paced (the same, origin paces each connection)")
	flag.DurationVar(&cfg.rttDelay, "rtt-delay", 20*time.Millisecond, "one-way delay, each direction, of the far origin in the rtt scenario (0: skip it)")
	flag.Int64Var(&cfg.uplinkRate, "uplink-rate", 12.5e6, "bytes/s of the far origin's uplink in the rtt scenario, shared by all connections (0: unlimited)")
	flag.Int64Var(&cfg.connRate, "conn-rate", 10e6, "origin bytes/s per connection in the conn-paced scenario (0: skip it)")
	flag.StringVar(&cfg.pkgswarmArgs, "pkgswarm-args", "", "extra arguments for pkgswarm serve, space-separated (e.g. \"--hold 1ms\")")
	flag.StringVar(&cfg.doc, "doc", "", "also write the tables into this Markdown file between its result markers and copy the plots beside it")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (caches, logs) for inspection")
	flag.StringVar(&cfg.replot, "replot", "", "measure nothing: rewrite the tables, plots (and -doc) from this results.json")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

type config struct {
	out, cache, pkgswarm, targets, doc string
	pkgswarmArgs, replot, scenarioList string
	scenarios                          []string // parsed scenarioList
	synthetic, keep                    bool
	runs, herd, reps                   int
	hotTime, smallTime, rttDelay       time.Duration
	herdRate, pacedRate                int64
	uplinkRate, connRate               int64
}

// optionalScenarios are the scenarios -scenarios can name; the loopback
// one always runs (its instances serve the hot and small steps).
var optionalScenarios = []string{scPaced, scUpgrade, scRTT, scConnPaced}

// parseScenarios parses -scenarios.
func parseScenarios(list string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "" || item == scLoopback:
			continue
		case !slices.Contains(optionalScenarios, item):
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", item, strings.Join(optionalScenarios, ", "))
		case slices.Contains(out, item):
			return nil, fmt.Errorf("-scenarios: %q is listed twice", item)
		}
		out = append(out, item)
	}
	return out, nil
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if cfg.replot != "" {
		b, err := os.ReadFile(cfg.replot)
		if err != nil {
			return err
		}
		var res Results
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("read %s: %w", cfg.replot, err)
		}
		return writeResults(cfg, &res, log)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: apt-get runs with a private state as root, and approx needs a private mount namespace")
	}
	specs, err := parseSpecs(cfg.targets)
	if err != nil {
		return err
	}
	if cfg.scenarios, err = parseScenarios(cfg.scenarioList); err != nil {
		return err
	}
	if cfg.rttDelay < 0 || cfg.uplinkRate < 0 || cfg.connRate < 0 || cfg.pacedRate < 0 {
		return fmt.Errorf("-rtt-delay, -uplink-rate, -conn-rate and -paced-origin-rate must not be negative")
	}
	var kinds []target.Kind
	for _, sp := range specs {
		kinds = append(kinds, sp.kind)
	}
	if miss := target.Missing(kinds); len(miss) > 0 {
		return fmt.Errorf("missing programs: %s; run bench/install-deps.sh", strings.Join(miss, ", "))
	}
	if cfg.runs < 1 || cfg.herd < 1 || cfg.reps < 1 {
		return fmt.Errorf("-runs, -herd and -rounds must be at least 1")
	}
	work, err := os.MkdirTemp("", "pkgswarm-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		log.Info("keeping the work directory", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	fx, err := fixture.Build(ctx, fixture.Options{CacheDir: cfg.cache, Set: fixture.Main, Synthetic: cfg.synthetic, Log: log})
	if err != nil {
		return err
	}
	var up *fixture.Fixture
	if slices.ContainsFunc(cfg.scenarios, func(s string) bool { return s != scPaced }) {
		if up, err = fixture.Build(ctx, fixture.Options{CacheDir: cfg.cache, Set: fixture.Upgrade, Synthetic: cfg.synthetic, Log: log}); err != nil {
			return err
		}
	}
	if cfg.pkgswarm == "" {
		cfg.pkgswarm = filepath.Join(work, "pkgswarm")
		log.Info("building pkgswarm", "out", cfg.pkgswarm)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", cfg.pkgswarm, "./cmd/pkgswarm")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build pkgswarm (run from the module root, or pass -pkgswarm): %w\n%s", err, out)
		}
	}
	b := &bench{cfg: cfg, fx: fx, up: up, work: work, log: log}
	res, err := b.all(ctx, specs)
	if err != nil {
		return err
	}
	return writeResults(cfg, res, log)
}
