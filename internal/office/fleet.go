package office

import (
	"cmp"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// FleetOptions describes a fleet of sites: each site a LAN of PerSite nodes
// behind a gateway of its own, whose link into the WAN (where the origin
// lives) is the site's uplink. Options.NodeRate shapes every node's LAN
// link, OriginRate the origin's link into the WAN; every other Options
// field means what it means for New (Nodes is ignored).
type FleetOptions struct {
	Options
	Sites, PerSite int
	// SiteRate shapes each gateway's WAN link, both directions ("" for
	// none): what enters and leaves a site goes through it.
	SiteRate string
	// SiteDelay, when positive, is the one-way delay each gateway adds to
	// what it forwards (netlab Host.Delay): sites are 4 × SiteDelay apart
	// in round-trip time, and 2 × SiteDelay further from the origin than
	// Options.OriginDelay alone makes them.
	SiteDelay time.Duration
}

// Fleet is an office spread over sites. The embedded Office holds every
// node, site by site (Node(i) and Nodes work as in an office), and its LAN
// is site 0's. Gateways forward unicast only, so mDNS stays within a site.
type Fleet struct {
	*Office
	// Site[i] are the nodes of site i, named "s<i>n<j>".
	Site [][]*Node
	// LANs[i] is site i's LAN; WAN the network of the gateways and the
	// origin; Gateways[i] site i's gateway.
	LANs     []*netlab.LAN
	WAN      *netlab.LAN
	Gateways []*netlab.Host
}

// NewFleet builds a fleet for tb and (unless NoStart) starts every node.
// Subnets: the WAN is 10.80.0.0/24, site i is 10.80.<i+1>.0/24. Like New,
// it fails the test on error and skips it when labs cannot be built here;
// everything is removed by the test's Cleanup.
func NewFleet(tb testing.TB, opts FleetOptions) *Fleet {
	tb.Helper()
	if opts.Sites < 1 || opts.PerSite < 0 || opts.Sites > 200 {
		tb.Fatalf("office: a fleet of %d sites of %d nodes", opts.Sites, opts.PerSite)
	}
	opts.Name = cmp.Or(opts.Name, "fleet")
	opts.Port = cmp.Or(opts.Port, 3142)
	opts.OriginPort = cmp.Or(opts.OriginPort, 80)
	opts.LogLevel = cmp.Or(opts.LogLevel, "info")
	opts.StartTimeout = cmp.Or(opts.StartTimeout, 30*time.Second)
	if _, err := exec.LookPath("apt-get"); err != nil {
		tb.Skip("office: apt-get not found in PATH (install Debian package apt)")
	}
	o := &Office{tb: tb, opts: opts.Options, Repo: opts.Repo}
	o.lab = netlab.New(tb, opts.Name)
	if o.Repo == nil {
		o.Repo = testrepo.Build(tb, testrepo.Options{Packages: opts.Packages})
	}
	f := &Fleet{Office: o}
	f.WAN = o.lab.AddLAN("wan", "10.80.0.0/24")
	originHost := o.lab.AddHost("origin", f.WAN)
	if opts.OriginRate != "" {
		if err := originHost.Shape(f.WAN, opts.OriginRate); err != nil {
			tb.Fatalf("office: %v", err)
		}
	}
	for i := range opts.Sites {
		lan := o.lab.AddLAN("s"+strconv.Itoa(i), fmt.Sprintf("10.80.%d.0/24", i+1))
		gw := o.lab.AddRouter("gw"+strconv.Itoa(i), lan, f.WAN)
		if opts.SiteRate != "" {
			if err := gw.Shape(f.WAN, opts.SiteRate); err != nil {
				tb.Fatalf("office: %v", err)
			}
		}
		f.LANs = append(f.LANs, lan)
		f.Gateways = append(f.Gateways, gw)
	}
	if opts.SiteDelay > 0 {
		for _, gw := range f.Gateways {
			if err := gw.Delay(opts.SiteDelay); err != nil {
				tb.Fatalf("office: %v", err)
			}
		}
	}
	o.lan = f.LANs[0]
	origin, err := startOrigin(originHost, o.Repo.Dir, opts.OriginPort, opts.OriginDelay)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	o.Origin = origin
	origin.LAN = f.WAN
	tb.Cleanup(origin.close)
	for i := range opts.Sites {
		var site []*Node
		for j := range opts.PerSite {
			n := o.newNode(len(o.nodes), fmt.Sprintf("s%dn%d", i, j), f.LANs[i])
			n.Site = i
			o.nodes = append(o.nodes, n)
			site = append(site, n)
		}
		f.Site = append(f.Site, site)
	}
	if !opts.NoStart {
		o.startAll(tb, opts.StartTimeout)
	}
	return f
}
