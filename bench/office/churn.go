package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// runChurn is the churn run: pkgswarm nodes leave and join while others
// download. With n nodes split in three groups:
//
//   - A (the first n/3) run apt first, from a cold office;
//   - B (the next n/3) start their apt when node0 has the whole set, so
//     they fetch from peers that then go away: node0 is killed (SIGKILL)
//     1 s later, node1 stopped (SIGTERM) at 3 s once its apt is done, node2
//     killed at 6 s once its apt is done; node0 comes back at 4 s with its
//     cache and runs apt again from an empty apt cache;
//   - C (the rest) are off at first and join cold, half at 1.5 s and half
//     at 5 s, each running apt as soon as its node answers.
//
// Every apt-get run must succeed with every .deb's digest right.
func runChurn(ctx context.Context, cfg config, log *slog.Logger, fx *fixture.Fixture, repo *testrepo.Repo) ChurnResult {
	n := cfg.churnN
	c := ChurnResult{Run: Run{Setup: setupPkgswarm, Nodes: n}}
	if n < 6 {
		c.Errors = append(c.Errors, fmt.Sprintf("the churn run needs at least 6 nodes, not %d", n))
		return c
	}
	a, b := n/3, n/3
	err := office.Run("churn", os.Stderr, func(tb testing.TB) {
		o := newOffice(tb, cfg, repo, setupPkgswarm, n, true)
		nodes := o.Nodes()
		for _, nd := range nodes {
			reproxy(tb, o, nd.Apt(), "http://127.0.0.1:"+strconv.Itoa(nd.Port))
		}
		var start time.Time
		var mu sync.Mutex // protects the fields below and c
		at := func() float64 { return time.Since(start).Seconds() }
		ev := func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			mu.Lock()
			c.Events = append(c.Events, fmt.Sprintf("%.1f %s", at(), msg))
			mu.Unlock()
			log.Info("churn: "+msg, "t", fmt.Sprintf("%.1f", at()))
		}
		var wg sync.WaitGroup
		for _, nd := range nodes[:a+b] {
			wg.Go(func() {
				if err := nd.Start(ctx); err != nil {
					tb.Errorf("start %s: %v", nd.Name, err)
				}
			})
		}
		wg.Wait()
		if tb.Failed() {
			return
		}
		if _, err := waitPeers(ctx, nodes, 60*time.Second); err != nil {
			c.Notes = append(c.Notes, err.Error())
		}
		m := newMeter(ctx, tb, o, nil)
		start = time.Now()
		if cfg.cutFor > 0 {
			// The uplink goes down for a while: the origin's link is set
			// down and up again in its namespace.
			dev := o.Origin.Host.Iface(o.LAN())
			go func() {
				select {
				case <-time.After(cfg.cutAt):
				case <-ctx.Done():
					return
				}
				ev("the uplink is cut (origin link down for %v)", cfg.cutFor)
				exec.Command("ip", "-n", o.Origin.Host.Namespace(), "link", "set", "dev", dev, "down").Run()
				select {
				case <-time.After(cfg.cutFor):
				case <-ctx.Done():
				}
				exec.Command("ip", "-n", o.Origin.Host.Namespace(), "link", "set", "dev", dev, "up").Run()
				ev("the uplink is back")
			}()
		}
		done := make([]chan struct{}, n)
		for i := range done {
			done[i] = make(chan struct{})
		}
		var apts sync.WaitGroup
		aptOn := func(i int, what string) {
			nd := nodes[i]
			apts.Go(func() {
				ev("%s: apt-get update + download starts (%s)", nd.Name, what)
				end, err := aptRun(ctx, cfg, nd.Apt(), fx, time.Now)
				mu.Lock()
				c.AptRuns++
				c.NodeSeconds = append(c.NodeSeconds, round(end.Sub(start).Seconds()))
				if err != nil {
					c.Errors = append(c.Errors, fmt.Sprintf("%s (%s): %v", nd.Name, what, err))
				}
				mu.Unlock()
				if err != nil {
					ev("%s: apt FAILED: %v", nd.Name, clip(err.Error(), 300))
					tb.Logf("%s log tail:\n%s", nd.Name, tail(nd.Log(), cfg.logLines))
				} else {
					ev("%s: apt done, every .deb verified", nd.Name)
				}
				if what != "rejoin" {
					close(done[i])
				}
			})
		}
		join := func(i int) {
			apts.Go(func() {
				nd := nodes[i]
				if err := nd.Start(ctx); err != nil {
					tb.Errorf("join %s: %v", nd.Name, err)
					close(done[i])
					return
				}
				ev("%s joins (started cold)", nd.Name)
				aptOn(i, "joined")
			})
		}
		sleepUntil := func(d time.Duration, tB time.Time) {
			select {
			case <-time.After(time.Until(tB.Add(d))):
			case <-ctx.Done():
			}
		}
		waitDone := func(i int) {
			select {
			case <-done[i]:
			case <-ctx.Done():
			}
		}

		for i := range a {
			aptOn(i, "group A, cold office")
		}
		waitDone(0)
		tB := time.Now()
		for i := a; i < a+b; i++ {
			aptOn(i, "group B, while peers leave")
		}
		c1 := a + b + (n-a-b)/2

		sleepUntil(1*time.Second, tB)
		if err := nodes[0].Kill(); err != nil {
			tb.Errorf("kill node0: %v", err)
		}
		ev("node0 leaves: killed (SIGKILL) while group B downloads")

		sleepUntil(1500*time.Millisecond, tB)
		for i := a + b; i < c1; i++ {
			join(i)
		}

		sleepUntil(3*time.Second, tB)
		waitDone(1)
		ev("node1 leaves: SIGTERM sent")
		stopAt := time.Now()
		if err := nodes[1].Stop(10 * time.Second); err != nil {
			tb.Errorf("stop node1: %v", err)
		}
		ev("node1 has exited, %.1f s after SIGTERM", time.Since(stopAt).Seconds())

		sleepUntil(4*time.Second, tB)
		if err := nodes[0].Start(ctx); err != nil {
			tb.Errorf("restart node0: %v", err)
		} else {
			ev("node0 rejoins with its cache")
			if err := nodes[0].Apt().Clean(ctx); err != nil {
				tb.Errorf("apt-get clean on node0: %v", err)
			}
			aptOn(0, "rejoin")
		}

		sleepUntil(5*time.Second, tB)
		for i := c1; i < n; i++ {
			join(i)
		}

		if a >= 3 {
			sleepUntil(6*time.Second, tB)
			waitDone(2)
			if err := nodes[2].Kill(); err != nil {
				tb.Errorf("kill node2: %v", err)
			}
			ev("node2 leaves: killed (SIGKILL)")
		}
		apts.Wait()
		saveLogs(tb, cfg, "churn", nodes)
		m.finish(ctx, &c.Run, fx)
		c.Served = servedTotals(ctx, nodes)
		c.FinishSeconds, c.FirstSeconds = maxMin(c.NodeSeconds)
	})
	if err != nil {
		c.Errors = append(c.Errors, err.Error())
	}
	c.OK = len(c.Errors) == 0
	return c
}
