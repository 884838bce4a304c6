package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/aptenv"
	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// runOffice builds an office of n nodes in the given set-up, has every node
// run apt-get update and a download of the whole fixture at once, and
// measures it. The office (namespaces, processes, files) is gone when it
// returns.
func runOffice(ctx context.Context, cfg config, log *slog.Logger, fx *fixture.Fixture, repo *testrepo.Repo, setup string, n int) Run {
	r := Run{Setup: setup, Nodes: n}
	name := map[string]string{setupDirect: "od", setupACNG: "oa", setupPkgswarm: "op", setupBT: "ob"}[setup] + strconv.Itoa(n)
	err := office.Run(name, os.Stderr, func(tb testing.TB) {
		o := newOffice(tb, cfg, repo, setup, n, false)
		if setup == setupBT {
			runBitTorrent(ctx, tb, cfg, o, fx, &r)
			return
		}
		var cache *netlab.Host
		var acngLogs string
		switch setup {
		case setupDirect:
			for _, nd := range o.Nodes() {
				reproxy(tb, o, nd.Apt(), "")
			}
		case setupACNG:
			var url string
			cache, url, acngLogs = startACNG(ctx, tb, o, cfg)
			for _, nd := range o.Nodes() {
				reproxy(tb, o, nd.Apt(), url)
			}
		case setupPkgswarm:
			for _, nd := range o.Nodes() {
				reproxy(tb, o, nd.Apt(), "http://127.0.0.1:"+strconv.Itoa(nd.Port))
			}
			took, err := waitPeers(ctx, o.Nodes(), 60*time.Second)
			if err != nil {
				r.Notes = append(r.Notes, err.Error())
			} else {
				r.Notes = append(r.Notes, fmt.Sprintf("every node listed the other %d after %.1f s", n-1, took.Seconds()))
			}
		}
		m := newMeter(ctx, tb, o, cache)
		r.NodeSeconds, r.Errors = aptEverywhere(ctx, tb, cfg, o, fx, setup == setupPkgswarm)
		m.finish(ctx, &r, fx)
		r.FinishSeconds, r.FirstSeconds = maxMin(r.NodeSeconds)
		if acngLogs != "" && len(r.Errors) > 0 {
			for _, f := range []string{"apt-cacher.err", "apt-cacher.log"} {
				b, _ := os.ReadFile(filepath.Join(acngLogs, f))
				tb.Logf("apt-cacher-ng %s (tail):\n%s", f, tail(string(b), cfg.logLines))
			}
		}
		if setup == setupPkgswarm {
			saveLogs(tb, cfg, name, o.Nodes())
			r.Served = servedTotals(ctx, o.Nodes())
			r.Notes = append(r.Notes, "upload by node: "+uploadByNode(ctx, o.Nodes(), r.NodeUpload))
			if r.OriginRatio > 1.05 {
				r.Notes = append(r.Notes, fmt.Sprintf("origin requests by tier and node: %s", originByNode(ctx, o.Nodes())))
			}
		} else if os.Getenv("OFFICE_DEBUG_ORIGIN") != "" {
			for _, e := range o.Origin.Log() {
				tb.Logf("origin: %s %s range=%q ims=%q status=%d bytes=%d aborted=%v ua=%q", e.Method, e.Path, e.Range, e.IfModifiedSince, e.Status, e.Bytes, e.Aborted, e.UserAgent)
			}
		}
	})
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	r.OK = len(r.Errors) == 0
	return r
}

// newOffice makes the office of a set-up: pkgswarm runs on the nodes only
// in the pkgswarm set-up (and not at all with noStart).
func newOffice(tb testing.TB, cfg config, repo *testrepo.Repo, setup string, n int, noStart bool) *office.Office {
	opts := office.Options{
		Name:         "ob" + setup[:2] + strconv.Itoa(n),
		Nodes:        n,
		Repo:         repo,
		NodeRate:     cfg.lanRate,
		OriginRate:   cfg.uplink,
		OriginDelay:  cfg.delay,
		NoStart:      setup != setupPkgswarm || noStart,
		Program:      office.Program{Path: cfg.pkgswarm},
		ExtraArgs:    cfg.extraArgs,
		StartTimeout: 60 * time.Second,
		LogLevel:     cfg.logLevel,
	}
	if setup == setupPkgswarm {
		opts.MDNS = cfg.discovery == "mdns"
		opts.StaticPeers = cfg.discovery == "static"
	}
	return office.New(tb, opts)
}

// aptConfig is apt's configuration in every set-up beyond aptenv's: apt's
// own default of 3 retries (aptenv turns retries off for tests).
var aptConfig = []string{`Acquire::Retries "3";`}

// reproxy points a node's apt at proxy ("" for none), with aptConfig.
func reproxy(tb testing.TB, o *office.Office, a *office.Apt, proxy string) {
	if err := a.Reconfigure(aptenv.Options{Proxy: proxy, Sources: []aptenv.Source{o.AptSource()}, Config: aptConfig}); err != nil {
		tb.Fatalf("point apt at %q: %v", proxy, err)
	}
}

// startACNG starts apt-cacher-ng on a host of its own on the office's LAN,
// its link shaped like a node's, and returns the host and its proxy URL.
func startACNG(ctx context.Context, tb testing.TB, o *office.Office, cfg config) (h *netlab.Host, url, logDir string) {
	return startACNGOn(ctx, tb, o, cfg, "acng", o.LAN())
}

// startACNGOn starts apt-cacher-ng on a new host name on lan.
func startACNGOn(ctx context.Context, tb testing.TB, o *office.Office, cfg config, name string, lan *netlab.LAN) (h *netlab.Host, url, logDir string) {
	h = o.Lab().AddHost(name, lan)
	if err := h.Shape(lan, cfg.lanRate); err != nil {
		tb.Fatalf("shape the cache box: %v", err)
	}
	dir := tb.TempDir()
	d := func(s string) string { return filepath.Join(dir, s) }
	for _, s := range []string{"conf", "cache", "logs"} {
		if err := os.MkdirAll(d(s), 0o755); err != nil {
			tb.Fatalf("apt-cacher-ng: %v", err)
		}
	}
	// apt-cacher-ng refuses a configuration directory without a *.conf.
	if err := os.WriteFile(d("conf/acng.conf"), []byte("# settings are on the command line\n"), 0o644); err != nil {
		tb.Fatalf("apt-cacher-ng: %v", err)
	}
	ip := h.IP().String()
	cmd := h.Command(context.Background(), "apt-cacher-ng", "-c", d("conf"),
		"ForeGround=1", "Port=3142", "BindAddress="+ip,
		"CacheDir="+d("cache"), "LogDir="+d("logs"),
		"SupportDir=/usr/lib/apt-cacher-ng",
		"SocketPath="+d("acng.socket"), "PidFile="+d("acng.pid"))
	p, err := h.StartCmd(cmd)
	if err != nil {
		tb.Fatalf("start apt-cacher-ng: %v", err)
	}
	url = "http://" + ip + ":3142"
	client := office.HTTPClient(h)
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			tb.Fatalf("apt-cacher-ng did not answer on %s: %v; its log:\n%s", url, err, tail(p.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h, url, d("logs")
}

// aptRun runs apt-get update and a download of every fixture package, and
// checks what apt left.
// aptEverywhere runs apt on every node of o at once and returns each node's
// seconds from the common start and one line per failed node (with its log
// tail logged when withLogs).
func aptEverywhere(ctx context.Context, tb testing.TB, cfg config, o *office.Office, fx *fixture.Fixture, withLogs bool) ([]float64, []string) {
	var wg sync.WaitGroup
	start := time.Now()
	n := len(o.Nodes())
	times := make([]time.Duration, n)
	errs := make([]error, n)
	for i, nd := range o.Nodes() {
		wg.Go(func() {
			var end time.Time
			end, errs[i] = aptRun(ctx, cfg, nd.Apt(), fx, time.Now)
			times[i] = end.Sub(start)
		})
	}
	wg.Wait()
	secs := make([]float64, n)
	var failed []string
	for i := range n {
		secs[i] = round(times[i].Seconds())
		if errs[i] != nil {
			name := o.Node(i).Name
			failed = append(failed, fmt.Sprintf("%s: %v", name, errs[i]))
			tb.Logf("%s failed: %v", name, errs[i])
			if withLogs {
				tb.Logf("%s log tail:\n%s", name, tail(o.Node(i).Log(), cfg.logLines))
			}
		}
	}
	return secs, failed
}

// aptClient is what aptRun needs of a machine's apt (office.Apt).
type aptClient interface {
	Update(ctx context.Context) (string, error)
	Download(ctx context.Context, pkgs ...string) (string, error)
	Archives() (map[string]string, error)
}

// aptRun runs apt-get update and the download of every package of fx, then
// checks every .deb's digest. It returns when the download ended (now's
// reading as apt-get returned): a node is done when apt is, and the
// benchmark's own check after it (a SHA-256 of every file, on cores the
// other nodes share) is not the node's time. bench/cmd/single times apt
// the same way, and aria2c's time is its download's end.
func aptRun(ctx context.Context, cfg config, a aptClient, fx *fixture.Fixture, now func() time.Time) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.runTimeout)
	defer cancel()
	if _, err := a.Update(ctx); err != nil {
		return now(), fmt.Errorf("apt-get update: %w", err)
	}
	names := make([]string, len(fx.Debs))
	for i, d := range fx.Debs {
		names[i] = d.Name
	}
	if _, err := a.Download(ctx, names...); err != nil {
		return now(), fmt.Errorf("apt-get download: %w", err)
	}
	end := now()
	got, err := a.Archives()
	if err != nil {
		return end, err
	}
	return end, checkArchives(got, fx.Debs)
}

// waitPeers waits until every running node lists every other running one
// as a peer.
func waitPeers(ctx context.Context, nodes []*office.Node, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	var state string
	for time.Since(start) < limit && ctx.Err() == nil {
		running := 0
		for _, nd := range nodes {
			if nd.Running() {
				running++
			}
		}
		var short []string
		for _, nd := range nodes {
			if !nd.Running() {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := nd.Status(sctx)
			cancel()
			if err != nil {
				short = append(short, err.Error())
			} else if len(st.Peers) < running-1 {
				short = append(short, fmt.Sprintf("%s lists %d", nd.Name, len(st.Peers)))
			}
		}
		if len(short) == 0 {
			return time.Since(start), nil
		}
		state = strings.Join(short, ", ")
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("peers incomplete after %v: %s", limit, state)
}

// meter takes the counters before a run and the differences after it.
type meter struct {
	o      *office.Office
	cache  *netlab.Host
	lans   map[*netlab.Host]*netlab.LAN // the link counted for each host
	before map[*netlab.Host]office.LinkCounters
	tb     testing.TB
}

func newMeter(ctx context.Context, tb testing.TB, o *office.Office, cache *netlab.Host) *meter {
	lans := map[*netlab.Host]*netlab.LAN{o.Origin.Host: o.Origin.LAN}
	for _, nd := range o.Nodes() {
		lans[nd.Host] = nd.LAN()
	}
	if cache != nil {
		lans[cache] = o.LAN()
	}
	return newMeterOn(ctx, tb, o, cache, lans)
}

// newMeterOn is newMeter with the link to count for each host given.
func newMeterOn(ctx context.Context, tb testing.TB, o *office.Office, cache *netlab.Host, lans map[*netlab.Host]*netlab.LAN) *meter {
	m := &meter{o: o, cache: cache, lans: lans, before: map[*netlab.Host]office.LinkCounters{}, tb: tb}
	for h, lan := range lans {
		c, err := office.Counters(ctx, h, lan)
		if err != nil {
			tb.Fatalf("%v", err)
		}
		m.before[h] = c
	}
	o.Origin.ResetLog()
	return m
}

// tx returns what h sent since the meter started.
func (m *meter) tx(ctx context.Context, h *netlab.Host) int64 {
	c, err := office.Counters(ctx, h, m.lans[h])
	if err != nil {
		m.tb.Errorf("%v", err)
		return 0
	}
	return int64(c.Tx - m.before[h].Tx)
}

// finish fills r's traffic fields.
func (m *meter) finish(ctx context.Context, r *Run, fx *fixture.Fixture) {
	var up []int64
	for _, nd := range m.o.Nodes() {
		up = append(up, m.tx(ctx, nd.Host))
	}
	r.UploadMean, r.UploadMax = meanMax(up)
	r.NodeUpload = up
	if m.cache != nil {
		r.CacheUpload = m.tx(ctx, m.cache)
	}
	r.OriginLinkTx = m.tx(ctx, m.o.Origin.Host)
	r.OriginBytes, r.OriginRequests, r.OriginDebGETs, r.UniqueBytes, r.DupPaths = originStats(m.o.Origin.Log(), fx.Dir)
	if r.UniqueBytes > 0 {
		r.OriginRatio = round(float64(r.OriginBytes) / float64(r.UniqueBytes))
	}
}

// saveLogs copies each node's log to cfg.logDir (when set) as
// <run>-<node>.log: every life of the node, oldest first, each after a line
// "# office: <node> life i of n" when it lived more than once (a node killed
// and started again in the churn run), so what it did before a kill is kept.
func saveLogs(tb testing.TB, cfg config, run string, nodes []*office.Node) {
	if cfg.logDir == "" {
		return
	}
	if err := os.MkdirAll(cfg.logDir, 0o755); err != nil {
		tb.Errorf("save node logs: %v", err)
		return
	}
	for _, nd := range nodes {
		if err := os.WriteFile(filepath.Join(cfg.logDir, run+"-"+nd.Name+".log"), []byte(joinLives(nd.Name, nd.Logs())), 0o644); err != nil {
			tb.Errorf("save %s's log: %v", nd.Name, err)
		}
	}
}

// joinLives joins the logs of a node's lives: one life as it is, more each
// after a header line naming it.
func joinLives(node string, logs []string) string {
	if len(logs) == 1 {
		return logs[0]
	}
	var b strings.Builder
	for i, l := range logs {
		fmt.Fprintf(&b, "# office: %s life %d of %d\n", node, i+1, len(logs))
		b.WriteString(l)
		if l != "" && !strings.HasSuffix(l, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// servedTotals sums the nodes' served_bytes by tier.
func servedTotals(ctx context.Context, nodes []*office.Node) map[string]int64 {
	out := map[string]int64{}
	for _, nd := range nodes {
		if !nd.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := nd.Status(sctx)
		cancel()
		if err != nil {
			continue
		}
		for k, v := range st.Served {
			out[k] += v
		}
	}
	return out
}

// originByNode lists each node's origin requests and bytes, from its status.
func originByNode(ctx context.Context, nodes []*office.Node) string {
	var parts []string
	for _, nd := range nodes {
		if !nd.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := nd.Status(sctx)
		cancel()
		if err != nil {
			parts = append(parts, nd.Name+": "+err.Error())
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d req %.1f MB (served %v)", nd.Name, st.Origin.Requests, float64(st.Origin.Bytes)/1e6, st.Served))
	}
	return strings.Join(parts, "; ")
}

// uploadByNode lists each node's upload and what it fetched from the
// origin (from its status), so that the busiest node can be told apart.
func uploadByNode(ctx context.Context, nodes []*office.Node, up []int64) string {
	var parts []string
	for i, nd := range nodes {
		if i >= len(up) {
			break
		}
		origin := "?"
		if nd.Running() {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := nd.Status(sctx)
			cancel()
			if err == nil {
				origin = fmt.Sprintf("%.1f", float64(st.Origin.Bytes)/1e6)
			}
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MB (origin %s MB)", nd.Name, float64(up[i])/1e6, origin))
	}
	return strings.Join(parts, ", ")
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func maxMin(xs []float64) (hi, lo float64) {
	for i, x := range xs {
		if i == 0 || x > hi {
			hi = x
		}
		if i == 0 || x < lo {
			lo = x
		}
	}
	return hi, lo
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }
