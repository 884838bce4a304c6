package office

import (
	"cmp"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/netlab"
	"github.com/pkgswarm/pkgswarm/internal/testrepo"
)

// SitesOptions describes two sites of one organisation: two LANs joined only
// through a router, which also joins a third network where the origin
// lives (the "internet" side). Options.Nodes is the number of nodes at site
// A, NodesB at site B; every other Options field means what it means for New
// (NodeRate shapes every node's link, OriginRate the origin's).
type SitesOptions struct {
	Options
	// NodesB is the number of nodes at site B.
	NodesB int
	// Subnet (in Options) is site A's subnet; "" means "10.79.1.0/24".
	// SubnetB is site B's; "" means "10.79.2.0/24". WANSubnet is the
	// origin's network; "" means "10.79.0.0/24".
	SubnetB, WANSubnet string
}

// Sites is an office spread over two sites. The embedded Office holds
// every node (site A's first, then site B's, so Node(i) and Nodes work as
// in an office), and its LAN is site A's. The router forwards unicast
// between the three networks and never multicast, so mDNS stays within a
// site, as between real offices.
type Sites struct {
	*Office
	// A and B are the nodes at each site, named "a<i>" and "b<i>".
	A, B []*Node
	// LANA, LANB and WAN are site A's LAN, site B's, and the origin's
	// network.
	LANA, LANB, WAN *netlab.LAN
	// Router joins the three networks.
	Router *netlab.Host
}

// NewSites builds two sites for tb and (unless NoStart) starts every node's
// program and waits until each answers on its port. Like New, it fails the
// test on error and skips it when labs cannot be built here or apt-get is
// missing; everything is removed by the test's Cleanup.
func NewSites(tb testing.TB, opts SitesOptions) *Sites {
	tb.Helper()
	if opts.Nodes < 0 || opts.NodesB < 0 {
		tb.Fatalf("office: sites of %d and %d nodes", opts.Nodes, opts.NodesB)
	}
	opts.Name = cmp.Or(opts.Name, "sites")
	opts.Port = cmp.Or(opts.Port, 3142)
	opts.OriginPort = cmp.Or(opts.OriginPort, 80)
	opts.Subnet = cmp.Or(opts.Subnet, "10.79.1.0/24")
	opts.SubnetB = cmp.Or(opts.SubnetB, "10.79.2.0/24")
	opts.WANSubnet = cmp.Or(opts.WANSubnet, "10.79.0.0/24")
	opts.LogLevel = cmp.Or(opts.LogLevel, "info")
	opts.StartTimeout = cmp.Or(opts.StartTimeout, 30*time.Second)
	if _, err := exec.LookPath("apt-get"); err != nil {
		tb.Skip("office: apt-get not found in PATH (install Debian package apt)")
	}
	o := &Office{tb: tb, opts: opts.Options, Repo: opts.Repo}
	o.lab = netlab.New(tb, opts.Name) // skips when labs are unavailable
	if o.Repo == nil {
		o.Repo = testrepo.Build(tb, testrepo.Options{Packages: opts.Packages})
	}
	s := &Sites{Office: o}
	s.WAN = o.lab.AddLAN("wan", opts.WANSubnet)
	s.LANA = o.lab.AddLAN("sitea", opts.Subnet)
	s.LANB = o.lab.AddLAN("siteb", opts.SubnetB)
	o.lan = s.LANA
	originHost := o.lab.AddHost("origin", s.WAN)
	s.Router = o.lab.AddRouter("router", s.WAN, s.LANA, s.LANB)
	if opts.OriginRate != "" {
		if err := originHost.Shape(s.WAN, opts.OriginRate); err != nil {
			tb.Fatalf("office: %v", err)
		}
	}
	origin, err := startOrigin(originHost, o.Repo.Dir, opts.OriginPort, opts.OriginDelay)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	o.Origin = origin
	origin.LAN = s.WAN
	tb.Cleanup(origin.close) // runs before the lab's cleanup
	for i := range opts.Nodes {
		n := o.newNode(len(o.nodes), "a"+strconv.Itoa(i), s.LANA)
		o.nodes = append(o.nodes, n)
		s.A = append(s.A, n)
	}
	for i := range opts.NodesB {
		n := o.newNode(len(o.nodes), "b"+strconv.Itoa(i), s.LANB)
		o.nodes = append(o.nodes, n)
		s.B = append(s.B, n)
	}
	if !opts.NoStart {
		o.startAll(tb, opts.StartTimeout)
	}
	return s
}
