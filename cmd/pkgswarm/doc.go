// Command pkgswarm is an apt- and urpmi-compatible caching proxy backed by a
// peer swarm. See the README for the ways to point apt, urpmi and dnf at it.
//
// serve wires one node (internal/node) with the LAN tier (discovery) and the
// swarm tier; the other commands talk to a running node over HTTP (status,
// peers, prefetch, magnet) or work on a stopped node's data directory
// (import, verify, gc), as the directory's owner.
package main
