// Package office runs an office of real pkgswarm nodes for tests and
// benchmarks: N machines on one LAN, each a network namespace (internal/netlab)
// running the real pkgswarm CLI, an origin mirror on its own host of the same
// LAN serving a real signed repository (internal/testrepo), and on every node
// a real apt-get (internal/aptenv) that uses that node as its proxy.
//
// It promises that:
//   - nothing leaves the lab: nodes, their apt clients and the origin talk
//     only to addresses inside the lab's namespaces (and the origin's relay
//     to the test's loopback); mDNS is confined to the LAN bridge;
//   - each node runs the program of Options.Program: by default the current
//     binary re-executed as the pkgswarm CLI (the binary must call Child from
//     TestMain or main), or any executable such as a built pkgswarm or
//     another proxy, with arguments of the caller's choosing;
//   - a node keeps its data directory across Kill and Restart, so its node
//     id and cache survive, as on a real machine;
//   - the origin's access log and faults are testrepo's (Origin embeds a
//     testrepo.Origin), counted at the server, so every request a node makes
//     to the origin's lab address is in it;
//   - everything (processes, namespaces, the origin, temporary files) is
//     removed by the test's Cleanup, also on failure, when the tail of each
//     node's log is written to the test log.
//
// The origin is served from the test process: a listener made inside the
// origin host's namespace (by entering it on one locked OS thread) relays
// each connection to a testrepo server on the test's loopback. Nodes reach it
// only through the origin host's link, so shaping that link shapes the
// uplink. The same technique gives each node an HTTP client that dials from
// inside its namespace (Node.HTTPClient, Node.Status) without helper
// processes.
//
// For measurements and other clients: Options.NodeRate and OriginRate shape
// links with tbf, OriginDelay adds latency in the origin's relay (netem is
// not in this kernel), FleetOptions.SiteDelay in each site's gateway (netlab
// Host.Delay), Counters reads a host's interface byte counters, and
// StartAvahi runs an avahi-daemon of the test's own in a lab host so
// avahi-browse can look at the nodes as a desktop would.
//
// NewSites builds the same on two sites: two LANs joined only through a
// router that also joins the origin's network (unicast only, so mDNS stays
// within a site). CLICommand runs the pkgswarm CLI (e.g. `pkgswarm magnet`)
// inside a lab host, by the same re-execution as nodes.
//
// Run gives programs that are not tests (benchmark commands) a testing.TB,
// so they can build offices too. It needs what netlab needs (root, iproute2),
// plus apt-get, gpg and dpkg-deb; New skips the test when they are missing.
// StartAvahi needs avahi-daemon, avahi-utils, dbus and unshare (util-linux).
package office
