package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// MirrorRun is one mirror run (-mirrors): K pkgswarm mirror nodes each run
// `pkgswarm prefetch` of the whole suite from one master (the origin)
// behind the shaped uplink, all at once.
type MirrorRun struct {
	Mirrors int      `json:"mirrors"`
	OK      bool     `json:"ok"`
	Errors  []string `json:"errors,omitempty"`
	// Seconds is from the common start to the last prefetch's successful
	// end; MirrorSeconds each mirror's.
	Seconds       float64   `json:"s"`
	MirrorSeconds []float64 `json:"mirror_s"`
	SuiteBytes    int64     `json:"suite_bytes"`
	OriginBytes   int64     `json:"origin_bytes"`
	OriginRatio   float64   `json:"origin_ratio"`
	UploadMean    int64     `json:"upload_mean"`
	UploadMax     int64     `json:"upload_max"`
}

// runMirrors runs one mirror run of k mirrors: the mirrors know each other
// as static peers (--peer; no mDNS: mirrors are configured, not
// discovered), each one's link shaped like a LAN node's, the master's to
// the uplink rate. A mirror is complete when its prefetch exits 0:
// prefetch checks every .deb's SHA-256 against the signed index as it
// arrives, after the node verified it before committing.
func runMirrors(ctx context.Context, cfg config, log *slog.Logger, fx *fixture.Fixture, repo *testrepo.Repo, k int) MirrorRun {
	r := MirrorRun{Mirrors: k}
	for _, d := range fx.Debs {
		r.SuiteBytes += d.Size
	}
	err := office.Run("mirrors"+strconv.Itoa(k), os.Stderr, func(tb testing.TB) {
		o := office.New(tb, office.Options{
			Name: "obmi" + strconv.Itoa(k), Nodes: k, Repo: repo,
			NodeRate: cfg.lanRate, OriginRate: cfg.uplink, OriginDelay: cfg.delay,
			StaticPeers: true, Program: office.Program{Path: cfg.pkgswarm},
			ExtraArgs: cfg.extraArgs, StartTimeout: 60 * time.Second, LogLevel: cfg.logLevel,
		})
		if k > 1 {
			if _, err := waitPeers(ctx, o.Nodes(), 60*time.Second); err != nil {
				r.Errors = append(r.Errors, err.Error())
			}
		}
		m := newMeter(ctx, tb, o, nil)
		var wg sync.WaitGroup
		start := time.Now()
		times := make([]time.Duration, k)
		errs := make([]error, k)
		for i, nd := range o.Nodes() {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, cfg.runTimeout)
				defer cancel()
				cmd := nd.Host.Command(pctx, cfg.pkgswarm, "prefetch", "--server", "http://127.0.0.1:"+strconv.Itoa(nd.Port),
					"--url", o.Origin.URL, "--suite", fx.Suite, "--component", fx.Component, "--arch", "amd64", "--jobs", "4")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					errs[i] = fmt.Errorf("prefetch on %s: %v: %s", nd.Name, err, tail(out.String(), 5))
				}
				times[i] = time.Since(start)
			})
		}
		wg.Wait()
		var tmp Run
		m.finish(ctx, &tmp, fx)
		r.OriginBytes, r.UploadMean, r.UploadMax = tmp.OriginBytes, tmp.UploadMean, tmp.UploadMax
		if tmp.UniqueBytes > 0 {
			r.OriginRatio = round(float64(tmp.OriginBytes) / float64(tmp.UniqueBytes))
		}
		for i := range k {
			r.MirrorSeconds = append(r.MirrorSeconds, round(times[i].Seconds()))
			if errs[i] != nil {
				r.Errors = append(r.Errors, errs[i].Error())
			}
		}
		r.Seconds, _ = maxMin(r.MirrorSeconds)
		saveLogs(tb, cfg, "mirrors"+strconv.Itoa(k), o.Nodes())
	})
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	r.OK = len(r.Errors) == 0
	log.Info("mirror run done", "mirrors", k, "s", r.Seconds, "origin_ratio", r.OriginRatio, "ok", r.OK)
	return r
}
