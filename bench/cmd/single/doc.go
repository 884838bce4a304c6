// Command single runs the single-node comparison of pkgswarm against apt
// straight from the origin, apt-cacher-ng and approx (nginx serving the
// fixture from disk is the ceiling for hot hits; nginx passing requests to the
// origin and keeping nothing, the "nginx-proxy" target, is what a hop between
// apt and the origin costs by itself in the apt scenarios), on one machine, in one
// run, all on loopback, and writes the numbers as JSON, as Markdown tables
// (with issue 2's and issue 13's goals checked) and as PNG plots.
//
//	go run ./bench/cmd/single -out bench/out [-doc docs/benchmarks.md]
//
// Each scenario is a package set and a path to the origin, run cold
// (fresh target, fresh apt client) and warm through every target:
// loopback and paced (the main set of bench/fixture), upgrade, rtt and
// conn-paced (its many-small-files set, on loopback, behind a relay that
// puts the origin 20 ms away, and with the origin pacing each connection).
// The origin counts what it serves file by file, and the report checks
// that it served each file at most once and none that no client asked for.
//
// See docs/benchmarks.md for the method. Every server it starts is stopped
// when it ends, also on Ctrl-C; every load loop is bounded by a count and
// a deadline. It needs root (apt-get with a private state, approx in a
// private mount namespace) and the Debian packages apt-cacher-ng, approx,
// socat, nginx-light and gnuplot-nox (bench/install-deps.sh).
package main
