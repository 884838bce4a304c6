// Package netlab builds throw-away networks of Linux network namespaces for
// tests: LANs (a bridge in a namespace of its own), hosts (a namespace with one
// veth into each LAN it joins) and routers (hosts that forward between LANs).
//
// It promises that:
//   - nothing in a lab can reach outside it: no namespace gets a default route,
//     nothing is NATed, and the lab's addresses are only ever configured inside
//     its own namespaces, never in the namespace of the test process;
//   - every namespace, bridge, veth and process a lab makes is removed by the
//     test's Cleanup, also when the test fails or panics; namespaces left behind
//     by a test binary that was killed are removed by the next New with the same
//     name (a namespace is stale when the process that made it is gone);
//   - processes started with Host.Start log to a file under t.TempDir() and are
//     killed (with their process group) in Cleanup; when the test failed, the
//     tail of each log is written to the test log.
//
// Every host gets `lo` up with multicast on and a 224.0.0.0/4 route on its
// first LAN interface, which is what mDNS stacks need. Routers forward unicast
// between the LANs they join; multicast is never forwarded. Hosts learn routes
// to every LAN they can reach through routers, via the first router of the
// shortest path (so sites behind gateways on a shared WAN reach each other).
// Host.Shape limits a link's rate (tbf); Host.Delay makes a router hold what
// it forwards (a tun device served by the test process, as this kernel has no
// netem). InNetns runs Go code inside a host's namespace, so a test can
// listen and dial there without helper processes.
//
// It needs root and iproute2 (`ip`, `tc`), and Delay a kernel with tun (the
// device node is made when missing); Available reports why a lab cannot be
// built, and New skips the test with that reason (or fails it under CI=true,
// where every lab test must run). Hosts get IPv4 addresses; Host.AddAddr adds
// more, IPv6 ones included. Interface names inside a lab are
// short and per namespace (eth0, eth1 … on hosts, br0 and pN on a LAN), so they
// stay within the kernel's 15-byte limit whatever the test is called.
package netlab
