// Package target starts and stops the servers the benchmarks compare, each
// on a loopback port with its own temporary configuration and cache:
// pkgswarm, apt-cacher-ng and approx as caching proxies in front of the
// benchmark origin (or of a relay that puts it far away); nginx serving the
// fixture straight from disk as the ceiling for hot hits; and nginx passing
// each request to the origin and keeping nothing (nginx-proxy), the floor
// for anything between apt and the origin. The origin itself is the
// "direct" target.
//
// Every process is started in its own process group with the parent-death
// signal set to SIGKILL, and Stop ends the whole group (SIGTERM, then
// SIGKILL after a grace period), so nothing outlives the benchmark, even
// when it is interrupted. approx, which runs under inetd and logs only to
// syslog, is run by socat (one approx process per connection, as inetd
// does) inside a private mount and PID namespace whose /dev/log is a socket
// of its own, so the host's /dev is never touched.
//
// Nothing here reaches beyond 127.0.0.1.
package target
