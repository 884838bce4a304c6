package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/bench/fixture"
	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// SitesRun is one many-sites run (-sites): S sites of P nodes, each site
// behind its own uplink, every node downloading the fixture at once.
type SitesRun struct {
	Run
	Sites   int `json:"sites"`
	PerSite int `json:"per_site"`
	// SiteDelay is the one-way delay of each site's gateway: sites are four
	// times it apart in round-trip time. The origin stays -delay away: its
	// relay holds traffic for the rest.
	SiteDelay string `json:"site_one_way_delay,omitempty"`
	// SiteIn is, per site, the bytes the site's pkgswarm nodes took from
	// the swarm tier (other sites) and from the origin (sum of served_bytes
	// by tier over the site's nodes); SwarmShare is swarm / (swarm + origin).
	SiteSwarm  []int64   `json:"site_swarm_bytes,omitempty"`
	SiteOrigin []int64   `json:"site_origin_bytes,omitempty"`
	SwarmShare []float64 `json:"site_swarm_share,omitempty"`
	// SiteFinish is the last node's time per site.
	SiteFinish []float64 `json:"site_finish_s,omitempty"`
	// DHT is what the nodes' DHT servers did while they downloaded and in
	// an idle window after (-dht-idle), pkgswarm only.
	DHT []DHTWindow `json:"dht,omitempty"`
	// Over the downloads: SiteRetrans is, per site, the share of the TCP
	// segments the site's nodes sent that were sent again (losses in the
	// shapers' queues, tail-loss probes), OriginRetrans the origin host's;
	// SiteDrops is, per site, the frames the shaper of its uplink dropped,
	// out of the site and into it.
	SiteRetrans   []float64   `json:"site_tcp_retrans,omitempty"`
	OriginRetrans float64     `json:"origin_tcp_retrans,omitempty"`
	SiteDrops     [][2]uint64 `json:"site_shaper_drops,omitempty"`
}

// linkLoss is the TCP and shaper counters of a fleet at one moment.
type linkLoss struct {
	nodes  []office.TCPCounters // by node, site by site
	origin office.TCPCounters
	drops  [][2]uint64 // by site: out, in
}

// readLinkLoss reads every node's and the origin's TCP counters and every
// gateway's shaper drops; a counter it cannot read is a note, not a failure.
func readLinkLoss(ctx context.Context, fl *office.Fleet, notes *[]string) linkLoss {
	var l linkLoss
	var errs []string
	for _, nd := range fl.Nodes() {
		c, err := office.TCP(ctx, nd.Host)
		if err != nil {
			errs = append(errs, err.Error())
		}
		l.nodes = append(l.nodes, c)
	}
	c, err := office.TCP(ctx, fl.Origin.Host)
	if err != nil {
		errs = append(errs, err.Error())
	}
	l.origin = c
	for _, gw := range fl.Gateways {
		out, in, err := gw.ShaperDrops(fl.WAN)
		if err != nil {
			errs = append(errs, err.Error())
		}
		l.drops = append(l.drops, [2]uint64{out, in})
	}
	if len(errs) > 0 {
		*notes = append(*notes, "link counters: "+strings.Join(errs, "; "))
	}
	return l
}

// lossBetween fills r's loss figures from two readings.
func lossBetween(r *SitesRun, fl *office.Fleet, a, b linkLoss) {
	share := func(a, b office.TCPCounters) float64 {
		out := b.OutSegs - a.OutSegs
		if out == 0 || b.OutSegs < a.OutSegs || b.RetransSegs < a.RetransSegs {
			return 0
		}
		return float64(b.RetransSegs-a.RetransSegs) / float64(out)
	}
	i := 0
	for s, site := range fl.Site {
		var sa, sb office.TCPCounters
		for range site {
			if i < len(a.nodes) && i < len(b.nodes) {
				sa.OutSegs += a.nodes[i].OutSegs
				sa.RetransSegs += a.nodes[i].RetransSegs
				sb.OutSegs += b.nodes[i].OutSegs
				sb.RetransSegs += b.nodes[i].RetransSegs
			}
			i++
		}
		r.SiteRetrans = append(r.SiteRetrans, math.Round(share(sa, sb)*1e4)/1e4)
		if s < len(a.drops) && s < len(b.drops) {
			r.SiteDrops = append(r.SiteDrops, [2]uint64{b.drops[s][0] - a.drops[s][0], b.drops[s][1] - a.drops[s][1]})
		}
	}
	r.OriginRetrans = math.Round(share(a.origin, b.origin)*1e4) / 1e4
}

// runSites runs one set-up on a fleet of sites. pkgswarm nodes find their
// site's peers by mDNS (confined to the site: gateways forward no
// multicast) and the other sites through a private DHT bootstrapped from
// the first node of every site (--swarm-bootstrap), each listening on its
// own address (--swarm-listen IP:6881). apt-cacher-ng: one box per site,
// on the site's LAN. bittorrent: the origin host seeds, every node leeches.
func runSites(ctx context.Context, cfg config, log *slog.Logger, fx *fixture.Fixture, repo *testrepo.Repo, setup string) SitesRun {
	S, P := cfg.sites, cfg.perSite
	r := SitesRun{Run: Run{Setup: setup, Nodes: S * P}, Sites: S, PerSite: P, SiteDelay: cfg.siteDelay.String()}
	name := "fs" + setup[:2] + strconv.Itoa(S)
	err := office.Run(name, os.Stderr, func(tb testing.TB) {
		var fl *office.Fleet
		fl = office.NewFleet(tb, office.FleetOptions{
			Options: office.Options{
				Name: name, Repo: repo, NodeRate: cfg.lanRate, OriginRate: cfg.uplink, OriginDelay: max(cfg.delay-cfg.siteDelay, 0),
				NoStart: true, MDNS: setup == setupPkgswarm, Program: office.Program{Path: cfg.pkgswarm},
				ExtraArgs: cfg.extraArgs, StartTimeout: 60 * time.Second, LogLevel: cfg.logLevel,
				NodeArgs: func(n *office.Node) []string {
					var boot []string
					for _, site := range fl.Site {
						if len(site) > 0 && site[0] != n {
							boot = append(boot, net.JoinHostPort(site[0].IP().String(), "6881"))
						}
					}
					args := []string{"--swarm-listen", net.JoinHostPort(n.IP().String(), "6881")}
					if len(boot) > 0 {
						args = append(args, "--swarm-bootstrap", strings.Join(boot, ","))
					}
					return args
				},
			},
			Sites: S, PerSite: P, SiteRate: cfg.siteRate, SiteDelay: cfg.siteDelay,
		})
		o := fl.Office
		if setup == setupBT {
			runBitTorrent(ctx, tb, cfg, o, fx, &r.Run)
			r.SiteFinish = siteFinish(fl, r.NodeSeconds)
			return
		}
		switch setup {
		case setupACNG:
			for i, lan := range fl.LANs {
				_, url, _ := startACNGOn(ctx, tb, o, cfg, "acng"+strconv.Itoa(i), lan)
				for _, nd := range fl.Site[i] {
					reproxy(tb, o, nd.Apt(), url)
				}
			}
		case setupPkgswarm:
			var wg sync.WaitGroup
			for _, nd := range o.Nodes() {
				wg.Go(func() {
					if err := nd.Start(ctx); err != nil {
						tb.Errorf("start %s: %v", nd.Name, err)
					}
				})
			}
			wg.Wait()
			if tb.Failed() {
				tb.FailNow()
			}
			for _, nd := range o.Nodes() {
				reproxy(tb, o, nd.Apt(), "http://127.0.0.1:"+strconv.Itoa(nd.Port))
			}
			for i, site := range fl.Site {
				if took, err := waitPeers(ctx, site, 60*time.Second); err != nil {
					r.Notes = append(r.Notes, fmt.Sprintf("site %d: %v", i, err))
				} else if i == 0 {
					r.Notes = append(r.Notes, fmt.Sprintf("site 0's nodes listed each other after %.1f s", took.Seconds()))
				}
			}
			// Let the DHT of the sites settle: every node has pinged its
			// bootstrap nodes once discovery added its site's peers.
			time.Sleep(3 * time.Second)
		}
		m := newMeter(ctx, tb, o, nil)
		loss0 := readLinkLoss(ctx, fl, &r.Notes)
		var snap0 map[string]swarm.Stats
		if setup == setupPkgswarm {
			snap0 = swarmSnapshot(ctx, o.Nodes())
		}
		start := time.Now()
		r.NodeSeconds, r.Errors = aptEverywhere(ctx, tb, cfg, o, fx, setup == setupPkgswarm)
		m.finish(ctx, &r.Run, fx)
		lossBetween(&r, fl, loss0, readLinkLoss(ctx, fl, &r.Notes))
		r.FinishSeconds, r.FirstSeconds = maxMin(r.NodeSeconds)
		r.SiteFinish = siteFinish(fl, r.NodeSeconds)
		if setup == setupPkgswarm {
			snap1 := swarmSnapshot(ctx, o.Nodes())
			r.DHT = append(r.DHT, dhtWindow("download", time.Since(start), snap0, snap1))
			if cfg.dhtIdle > 0 {
				t1 := time.Now()
				select {
				case <-time.After(cfg.dhtIdle):
				case <-ctx.Done():
				}
				r.DHT = append(r.DHT, dhtWindow("idle", time.Since(t1), snap1, swarmSnapshot(ctx, o.Nodes())))
			}
			saveLogs(tb, cfg, name, o.Nodes())
			r.Served = servedTotals(ctx, o.Nodes())
			for _, site := range fl.Site {
				t := servedTotals(ctx, site)
				r.SiteSwarm = append(r.SiteSwarm, t["swarm"])
				r.SiteOrigin = append(r.SiteOrigin, t["origin"])
				share := 0.0
				if t["swarm"]+t["origin"] > 0 {
					share = round(float64(t["swarm"]) / float64(t["swarm"]+t["origin"]))
				}
				r.SwarmShare = append(r.SwarmShare, share)
			}
			if r.OriginRatio > 1.1 {
				r.Notes = append(r.Notes, fmt.Sprintf("origin requests by tier and node: %s", originByNode(ctx, o.Nodes())))
			}
		}
	})
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	r.OK = len(r.Errors) == 0
	log.Info("sites run done", "setup", setup, "sites", S, "per_site", P, "finish", r.FinishSeconds, "origin_ratio", r.OriginRatio,
		"swarm_share", r.SwarmShare, "ok", r.OK, "errors", len(r.Errors))
	return r
}

func siteFinish(fl *office.Fleet, nodeSeconds []float64) []float64 {
	var out []float64
	i := 0
	for _, site := range fl.Site {
		hi := 0.0
		for range site {
			if i < len(nodeSeconds) && nodeSeconds[i] > hi {
				hi = nodeSeconds[i]
			}
			i++
		}
		out = append(out, hi)
	}
	return out
}
