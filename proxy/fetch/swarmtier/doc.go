// Package swarmtier adapts the BitTorrent tier (package swarm) to the fetch
// pipeline: a fetch.Source that asks the swarm for a file by its signed
// SHA-256 and size. It passes no web seeds: when the swarm fails, the
// pipeline resumes from the origin itself (Range), which keeps origin
// traffic counted and the origin's address and port rules enforced.
package swarmtier
