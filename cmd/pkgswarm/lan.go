package main

import (
	"context"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/pkgswarm/pkgswarm/discovery"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/lan"
	"github.com/pkgswarm/pkgswarm/proxy/fetch/swarmtier"
)

func lanFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "mdns", EnvVars: env("mdns"), Value: true, Usage: "find LAN peers and announce this node by mDNS (_pkgswarm._tcp)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "mdns-interface", EnvVars: env("mdns-interface"), Usage: "interface for mDNS (repeatable; default every up, multicast-capable, non-loopback interface)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "peer", EnvVars: env("peer"), Usage: "static LAN peer base URL, e.g. http://10.0.0.2:3142 (repeatable), for networks without multicast"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "announce-apt-proxy", EnvVars: env("announce-apt-proxy"), Value: true, Usage: "also announce _apt_proxy._tcp and _apt-proxy._tcp so squid-deb-proxy-client and auto-apt-proxy find this node"}),
		altsrc.NewDurationFlag(&cli.DurationFlag{Name: "peer-budget", EnvVars: env("peer-budget"), Value: 500 * time.Millisecond, Usage: "how long one round of LAN lookups may take before the next tier is tried"}),
	}
}

// peerSet adapts a Discovery to lan.PeerSet. The Discovery behind it can
// be swapped (mDNS failing to start falls back to static peers only).
type peerSet struct {
	d atomic.Pointer[discovery.Discovery]
	// banIP, if set, is called for each address of a banned peer, so that a
	// peer caught sending bad bytes on the LAN is kept out of the swarm too.
	banIP func(ip string, d time.Duration)
}

var _ lan.PeerSet = (*peerSet)(nil)

func (p *peerSet) Peers() []lan.Peer {
	d := p.d.Load()
	if d == nil {
		return nil
	}
	peers := d.Peers()
	out := make([]lan.Peer, 0, len(peers))
	for _, x := range peers {
		out = append(out, lan.Peer{ID: x.ID, URL: x.URL})
	}
	return out
}

func (p *peerSet) Ban(id string, until time.Time, reason string) {
	d := p.d.Load()
	if d == nil {
		return
	}
	if p.banIP != nil {
		for _, x := range d.Peers() {
			if x.ID != id {
				continue
			}
			for _, ip := range x.Addrs {
				p.banIP(ip.String(), time.Until(until))
			}
		}
	}
	d.Ban(id, until, reason)
}

// widePeers adapts the swarm tier's DHT lookups to the peer protocol's
// client: the peers of a file are the other sites' nodes fetching it.
type widePeers struct{ s *swarmtier.Source }

var _ lan.FilePeerSet = widePeers{}

func (w widePeers) Peers() []lan.Peer { return nil }

func (w widePeers) PeersFor(ctx context.Context, what string) []lan.Peer {
	var out []lan.Peer
	for _, a := range w.s.PeersFor(ctx, what) {
		out = append(out, lan.Peer{ID: a, URL: "http://" + a})
	}
	return out
}

func (w widePeers) Ban(id string, until time.Time, reason string) { w.s.Ban(id, until) }

// hostPorts lists the peers' addresses ("ip:port", from their base URLs),
// for the swarm tier to leave out.
func (p *peerSet) hostPorts() []string {
	var out []string
	for _, x := range p.Peers() {
		if u, err := url.Parse(x.URL); err == nil && u.Host != "" {
			out = append(out, u.Host)
		}
	}
	return out
}

// list is the peer table for the status page.
func (p *peerSet) list() any {
	if d := p.d.Load(); d != nil {
		return d.Peers()
	}
	return []discovery.Peer{}
}

// runDiscovery runs d until ctx ends. If mDNS cannot start (no usable
// interface, port 5353 taken), it says so and carries on with static peers
// only: a node without LAN discovery still serves.
func runDiscovery(ctx context.Context, log *slog.Logger, set *peerSet, cfg discovery.Config, onPeer func(discovery.Peer, bool)) error {
	d, err := discovery.New(cfg)
	if err != nil {
		return err
	}
	if onPeer != nil {
		d.Subscribe(onPeer)
	}
	set.d.Store(d)
	err = d.Run(ctx)
	if err == nil || !cfg.MDNS || ctx.Err() != nil {
		return err
	}
	log.Warn("mDNS unavailable; LAN peers limited to --peer (choose interfaces with --mdns-interface, or --mdns=false)", "err", err)
	cfg.MDNS, cfg.AnnounceAptProxy = false, false
	if d, err = discovery.New(cfg); err != nil {
		return err
	}
	if onPeer != nil {
		d.Subscribe(onPeer)
	}
	set.d.Store(d)
	return d.Run(ctx)
}
