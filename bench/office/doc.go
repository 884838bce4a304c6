// Command office runs the office simulation: N machines on one LAN, each a
// network namespace with a real apt-get, all updating and downloading the
// same package set at once from an origin mirror behind a shaped uplink, in
// three set-ups side by side:
//
//   - direct: every node's apt fetches from the origin itself;
//   - apt-cacher-ng: one shared apt-cacher-ng box (a host of its own on the
//     LAN, its link shaped like a node's) is every node's apt proxy;
//   - pkgswarm: a pkgswarm node on every machine (LAN peers found by mDNS,
//     LAN-only swarm), each machine's apt using its own node.
//
// A fourth, bittorrent (the origin seeds the large file with aria2c and a
// tracker, every node downloads it with aria2c), moves -big's synthetic
// large package: it runs by default when -big is given, and only then.
//
// For each set-up and N it reports the time until the last node has its
// packages, the origin's body bytes over one copy of what was fetched, and
// what each node (and the shared cache box) sent on the LAN. A churn run then
// has pkgswarm nodes leave (killed or stopped) and join (started cold,
// restarted with their cache) while others are downloading, and checks that
// every apt-get succeeds with the right bytes.
//
//	go run ./bench/office -n 1,5,10,20 -out docs -doc docs/benchmarks-office.md
//
// The fixture is bench/fixture's real Debian packages (the small ones and
// the large ones named by -large), built once and cached. Everything runs in
// network namespaces of its own (internal/office, internal/netlab) plus the
// origin's relay on loopback; every namespace, process and temporary file is
// removed when each office ends, also on failure, Ctrl-C, SIGTERM or SIGHUP (not when the process is killed outright, e.g. by SIGPIPE from piping its output into head). Every apt-get run
// is bounded by -run-timeout. It needs root, iproute2 with tc (tbf), apt,
// gpg, dpkg-deb, apt-cacher-ng and gnuplot (the Debian packages apt-cacher-ng
// and gnuplot-nox). None of it runs under go test.
//
// The results go to OUT/office-results.json, OUT/office-finish.png,
// OUT/office-origin.png and OUT/office-upload.png; with -doc the tables are
// written into that Markdown file between its result markers.
package main
