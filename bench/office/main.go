package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// config is the command line.
type config struct {
	ns          []int
	setups      []string
	out         string
	doc         string
	cache       string
	large       []string
	pkgswarm    string
	uplink      string
	delay       time.Duration
	lanRate     string
	discovery   string
	extraArgs   []string
	runTimeout  time.Duration
	churnN      int
	logLines    int
	logDir      string
	logLevel    string
	replot      bool
	keepRunning bool
	// Fleet runs (issue 14).
	name        string        // results prefix: NAME-results.json, NAME-*.png
	big         int           // MB of the large synthetic package; 0: the real fixture
	mirrors     []int         // mirror counts of the mirror run (-mirrors)
	suite       [2]int        // mirror suite: packages × MB
	cutAt       time.Duration // churn: when the origin's link goes down
	cutFor      time.Duration // churn: for how long (0: never)
	noOffice    bool          // only the mirror run
	sites       int           // many-sites run: this many sites (0: none)
	perSite     int           // nodes per site
	siteRate    string        // each site's uplink
	siteDelay   time.Duration // one-way delay of each site's gateway
	sitesSetups []string      // set-ups of the many-sites run
	dhtIdle     time.Duration // many-sites run: idle window measured after the downloads
}

// The set-ups, as named on the command line and in the results.
const (
	setupDirect   = "direct"
	setupACNG     = "apt-cacher-ng"
	setupPkgswarm = "pkgswarm"
	setupBT       = "bittorrent"
)

var allSetups = []string{setupDirect, setupACNG, setupBT, setupPkgswarm}

func main() {
	var cfg config
	var ns, setups, large, extra string
	flag.StringVar(&ns, "n", "1,5,10,20", "office sizes (nodes), comma-separated")
	flag.StringVar(&setups, "setups", "", "set-ups to run, comma-separated (default: "+strings.Join(defaultSetups(0), ",")+", and "+setupBT+" with -big)")
	flag.StringVar(&cfg.out, "out", "bench/out", "directory for office-results.json and the PNG plots")
	flag.StringVar(&cfg.doc, "doc", "", "also write the tables into this Markdown file between its result markers")
	flag.StringVar(&cfg.cache, "cache", "bench/.cache", "fixture cache directory (shared with the other benchmarks)")
	flag.StringVar(&large, "large", "llvm-15-dev", "large packages of the fixture list to include, comma-separated (the small ones are always in)")
	flag.StringVar(&cfg.pkgswarm, "pkgswarm", "", "pkgswarm binary (default: build ./cmd/pkgswarm into a temporary directory)")
	flag.StringVar(&cfg.uplink, "uplink", "50mbit", "the origin's link rate (tc tbf), both directions")
	flag.DurationVar(&cfg.delay, "delay", 20*time.Millisecond, "one-way delay added to the origin's traffic")
	flag.StringVar(&cfg.lanRate, "lan", "200mbit", "each LAN host's link rate (tc tbf), both directions")
	flag.StringVar(&cfg.discovery, "discovery", "mdns", "how pkgswarm nodes find each other: mdns or static")
	flag.StringVar(&extra, "pkgswarm-args", "", "extra arguments for pkgswarm serve, space-separated")
	flag.DurationVar(&cfg.runTimeout, "run-timeout", 6*time.Minute, "bound on one set-up's apt-get runs")
	flag.IntVar(&cfg.churnN, "churn", 10, "nodes in the churn run (0: skip it)")
	flag.IntVar(&cfg.logLines, "log-lines", 40, "lines of each failing node's log to print")
	flag.StringVar(&cfg.logDir, "logs", "", "copy every pkgswarm node's log into this directory after each run")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "the pkgswarm nodes' --log-level (debug logs every request)")
	flag.BoolVar(&cfg.replot, "replot", false, "run nothing: redraw the plots and rewrite -doc from OUT/NAME-results.json")
	flag.StringVar(&cfg.name, "name", "office", "name of the results: OUT/NAME-results.json and OUT/NAME-*.png")
	flag.IntVar(&cfg.big, "big", 0, "MB of one large synthetic package; with it the fixture is synthetic: that package plus a small set of 32 (0: the real fixture)")
	var mirrors, suite string
	flag.StringVar(&mirrors, "mirrors", "", "mirror run: mirror counts K, comma-separated; each mirror runs pkgswarm prefetch of the whole suite (-suite) from the master")
	flag.StringVar(&suite, "suite", "64x8", "mirror suite: COUNTxMB packages, plus the small set")
	flag.IntVar(&cfg.sites, "sites", 0, "many-sites run: this many sites (0: none), each behind its own uplink (-site-rate)")
	flag.IntVar(&cfg.perSite, "per-site", 5, "nodes per site in the many-sites run")
	flag.StringVar(&cfg.siteRate, "site-rate", "20mbit", "each site's uplink in the many-sites run (tc tbf), both directions")
	flag.DurationVar(&cfg.siteDelay, "site-delay", 10*time.Millisecond, "many-sites run: one-way delay each site's gateway adds (sites 4× this apart in RTT; the origin's relay keeps -delay minus this, so the origin stays -delay away)")
	flag.DurationVar(&cfg.dhtIdle, "dht-idle", 0, "many-sites run: after the downloads, measure the DHT's traffic for this long while the nodes only seed")
	var sitesSetups string
	flag.StringVar(&sitesSetups, "sites-setups", "apt-cacher-ng,bittorrent,pkgswarm", "set-ups of the many-sites run")
	flag.BoolVar(&cfg.noOffice, "no-office", false, "skip the office and churn runs (e.g. only -mirrors)")
	flag.DurationVar(&cfg.cutAt, "cut-at", 10*time.Second, "churn run: when the origin's link is cut (see -cut-for)")
	flag.DurationVar(&cfg.cutFor, "cut-for", 0, "churn run: how long the origin's link stays down (0: never cut)")
	flag.Parse()
	if cfg.sites > 0 {
		var err error
		if cfg.sitesSetups, err = parseSetups(sitesSetups); err != nil {
			fatal(err)
		}
	}
	if mirrors != "" {
		var err error
		if cfg.mirrors, err = parseSizes(mirrors); err != nil {
			fatal(fmt.Errorf("-mirrors: %w", err))
		}
	}
	if _, err := fmt.Sscanf(suite, "%dx%d", &cfg.suite[0], &cfg.suite[1]); err != nil || cfg.suite[0] < 1 || cfg.suite[1] < 1 {
		fatal(fmt.Errorf("-suite %q: want COUNTxMB, e.g. 64x8", suite))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)

	var err error
	if cfg.ns, err = parseSizes(ns); err != nil {
		fatal(err)
	}
	if setups == "" {
		setups = strings.Join(defaultSetups(cfg.big), ",")
	}
	if cfg.setups, err = parseSetups(setups); err != nil {
		fatal(err)
	}
	cfg.large = splitList(large)
	cfg.extraArgs = strings.Fields(extra)
	if cfg.discovery != "mdns" && cfg.discovery != "static" {
		fatal(fmt.Errorf("-discovery %q: want mdns or static", cfg.discovery))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		stop()
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "office bench:", err)
	os.Exit(1)
}

// parseSizes parses "1,5,10,20": positive node counts, sorted, no repeats.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 200 {
			return nil, fmt.Errorf("-n: %q is not a node count from 1 to 200", f)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-n names no office size")
	}
	slices.Sort(out)
	return out, nil
}

// defaultSetups are the set-ups run without -setups: all of them, but the
// BitTorrent one only with a synthetic large file (-big MB), the file it
// moves.
func defaultSetups(big int) []string {
	if big > 0 {
		return allSetups
	}
	return slices.DeleteFunc(slices.Clone(allSetups), func(s string) bool { return s == setupBT })
}

// parseSetups parses the -setups list against allSetups, keeping their order.
func parseSetups(s string) ([]string, error) {
	want := splitList(s)
	for _, w := range want {
		if !slices.Contains(allSetups, w) {
			return nil, fmt.Errorf("-setups: unknown set-up %q (known: %s)", w, strings.Join(allSetups, ", "))
		}
	}
	var out []string
	for _, a := range allSetups {
		if slices.Contains(want, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// fixtureList is the default fixture list with only the large packages in
// keep (the large ones are those of 10 MB and more, by the comment in
// packages.txt: everything after the "# Large" line).
func fixtureList(keep []string) ([]fixture.Spec, error) {
	var small, text strings.Builder
	var large []string
	inLarge := false
	for line := range strings.SplitSeq(fixture.DefaultList, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "# Large") {
			inLarge = true
			continue
		}
		if !inLarge {
			small.WriteString(line + "\n")
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(line), "=")
		large = append(large, name)
		if slices.Contains(keep, name) {
			text.WriteString(line + "\n")
		}
	}
	list, err := fixture.ParseList(small.String() + text.String())
	if err != nil {
		return nil, err
	}
	for _, k := range keep {
		if !slices.Contains(large, k) {
			return nil, fmt.Errorf("-large: %s is not a large package of bench/fixture/packages.txt (those are %s)", k, strings.Join(large, ", "))
		}
	}
	return list, nil
}

// run builds what the benchmark needs, runs every set-up at every size and
// the churn run, and writes the results.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	if cfg.replot {
		return replot(ctx, cfg)
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, tc, apt-get with a private state)")
	}
	need := []string{"ip", "tc", "apt-get", "gpg", "dpkg-deb", "gnuplot"}
	if slices.Contains(cfg.setups, setupACNG) {
		need = append(need, "apt-cacher-ng")
	}
	if slices.Contains(cfg.setups, setupBT) {
		if cfg.big == 0 {
			return errors.New("the bittorrent set-up moves the large file of -big: give -big")
		}
		need = append(need, "aria2c")
	}
	for _, bin := range need {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found in PATH (Debian packages: iproute2, apt, gpg, dpkg, apt-cacher-ng, gnuplot-nox): %w", bin, err)
		}
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	var fx *fixture.Fixture
	var err error
	if cfg.big > 0 {
		fx, err = syntheticFixture(ctx, cfg.cache, fmt.Sprintf("fleet-big%d", cfg.big), fleetPackages(cfg.big), log)
	} else {
		var list []fixture.Spec
		if list, err = fixtureList(cfg.large); err != nil {
			return err
		}
		fx, err = fixture.Build(ctx, fixture.Options{CacheDir: cfg.cache, List: list, Log: log})
	}
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "office-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if cfg.pkgswarm == "" {
		cfg.pkgswarm = filepath.Join(work, "pkgswarm")
		log.Info("building pkgswarm", "out", cfg.pkgswarm)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", cfg.pkgswarm, "./cmd/pkgswarm")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build pkgswarm (run from the module root, or pass -pkgswarm): %v\n%s", err, out)
		}
	}
	version, _ := exec.Command(cfg.pkgswarm, "--version").Output()
	res := Results{
		Name:     cfg.name,
		Started:  time.Now().UTC().Truncate(time.Second),
		Machine:  machine(),
		Pkgswarm: strings.TrimSpace(string(version)),
		ACNG:     debVersion("apt-cacher-ng"),
		Apt:      debVersion("apt"),
		Uplink:   cfg.uplink, Delay: cfg.delay.String(), LAN: cfg.lanRate,
		Discovery: cfg.discovery,
		Fixture:   fixtureInfo(fx),
	}
	repo := &testrepo.Repo{Dir: fx.Dir, Suite: fx.Suite, Component: fx.Component, Arch: "amd64",
		Key: &testrepo.Key{KeyringPath: fx.KeyringPath}}
	save := func() error {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(cfg.out, cfg.name+"-results.json"), append(b, '\n'), 0o644)
	}
	var failed []string
	if cfg.noOffice {
		cfg.ns, cfg.churnN = nil, 0
	}
	for _, n := range cfg.ns {
		for _, s := range cfg.setups {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Info("office run", "setup", s, "nodes", n)
			r := runOffice(ctx, cfg, log, fx, repo, s, n)
			res.Runs = append(res.Runs, r)
			log.Info("office run done", "setup", s, "nodes", n, "finish", r.FinishSeconds, "origin_ratio", r.OriginRatio,
				"upload_mean_mb", mb(r.UploadMean), "upload_max_mb", mb(r.UploadMax), "ok", r.OK, "errors", len(r.Errors))
			if !r.OK {
				failed = append(failed, fmt.Sprintf("%s N=%d: %s", s, n, strings.Join(r.Errors, "; ")))
			}
			if err := save(); err != nil {
				return err
			}
		}
	}
	if cfg.churnN > 0 && ctx.Err() == nil {
		log.Info("churn run", "nodes", cfg.churnN)
		c := runChurn(ctx, cfg, log, fx, repo)
		res.Churn = &c
		log.Info("churn run done", "finish", c.FinishSeconds, "origin_ratio", c.OriginRatio, "ok", c.OK, "errors", len(c.Errors))
		if !c.OK {
			failed = append(failed, "churn: "+strings.Join(c.Errors, "; "))
		}
	}
	if cfg.sites > 0 {
		for _, s := range cfg.sitesSetups {
			if ctx.Err() != nil {
				break
			}
			sr := runSites(ctx, cfg, log, fx, repo, s)
			res.Sites = append(res.Sites, sr)
			if !sr.OK {
				failed = append(failed, fmt.Sprintf("sites %s: %s", s, strings.Join(sr.Errors, "; ")))
			}
			if err := save(); err != nil {
				return err
			}
		}
	}
	if len(cfg.mirrors) > 0 && ctx.Err() == nil {
		sfx, err := syntheticFixture(ctx, cfg.cache, fmt.Sprintf("fleet-suite%dx%d", cfg.suite[0], cfg.suite[1]), suitePackages(cfg.suite[0], cfg.suite[1]), log)
		if err != nil {
			return err
		}
		srepo := &testrepo.Repo{Dir: sfx.Dir, Suite: sfx.Suite, Component: sfx.Component, Arch: "amd64",
			Key: &testrepo.Key{KeyringPath: sfx.KeyringPath}}
		for _, k := range cfg.mirrors {
			if ctx.Err() != nil {
				break
			}
			mr := runMirrors(ctx, cfg, log, sfx, srepo, k)
			res.Mirrors = append(res.Mirrors, mr)
			if !mr.OK {
				failed = append(failed, fmt.Sprintf("mirrors K=%d: %s", k, strings.Join(mr.Errors, "; ")))
			}
			if err := save(); err != nil {
				return err
			}
		}
	}
	res.Finished = time.Now().UTC().Truncate(time.Second)
	if err := save(); err != nil {
		return err
	}
	if err := plot(ctx, cfg.out, cfg.name, res); err != nil {
		return err
	}
	if cfg.doc != "" {
		if err := writeDoc(cfg.doc, res); err != nil {
			return err
		}
	}
	fmt.Print(tables(res))
	if len(failed) > 0 {
		return fmt.Errorf("%d run(s) had failures:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// replot redraws the plots and the -doc tables from a saved results file.
func replot(ctx context.Context, cfg config) error {
	b, err := os.ReadFile(filepath.Join(cfg.out, cfg.name+"-results.json"))
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(cfg.out, cfg.name+"-results.json"), err)
	}
	if err := plot(ctx, cfg.out, cfg.name, res); err != nil {
		return err
	}
	if cfg.doc != "" {
		return writeDoc(cfg.doc, res)
	}
	fmt.Print(tables(res))
	return nil
}

func fixtureInfo(fx *fixture.Fixture) FixtureInfo {
	fi := FixtureInfo{ID: fx.ID, Packages: len(fx.Debs), Bytes: fx.TotalBytes()}
	for _, d := range fx.Debs {
		if d.Size >= 10<<20 {
			fi.Large = append(fi.Large, fmt.Sprintf("%s (%.1f MB)", d.Name, float64(d.Size)/1e6))
		}
	}
	return fi
}

// machine describes the machine the numbers come from.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
					mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/1e6)
				}
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d × %s%s, Linux %s", runtime.NumCPU(), cpu, mem, strings.TrimSpace(string(kernel)))
}

func debVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "not installed"
	}
	return strings.TrimSpace(string(out))
}

func mb(b int64) string { return fmt.Sprintf("%.1f", float64(b)/1e6) }
