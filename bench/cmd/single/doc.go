// Command single runs the single-node comparison of pkgswarm against apt
// straight from the origin, apt-cacher-ng and approx (nginx serving the
// fixture from disk is the ceiling for hot hits), on one machine, one
// fixture, in one run, all on loopback, and writes the numbers as JSON, as
// Markdown tables and as PNG plots.
//
//	go run ./bench/cmd/single -out bench/out [-doc docs/benchmarks.md]
//
// See docs/benchmarks.md for the method. Every server it starts is stopped
// when it ends, also on Ctrl-C; every load loop is bounded by a count and
// a deadline. It needs root (apt-get with a private state, approx in a
// private mount namespace) and the Debian packages apt-cacher-ng, approx,
// socat, nginx-light and gnuplot-nox (bench/install-deps.sh).
package main
