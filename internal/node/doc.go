// Package node wires one pkgswarm node together: the content store, the
// fetch pipeline with its tiers (the origin client here; LAN and swarm tiers
// passed in), the trust resolver, the HTTP front and the status wrapper. It
// is the only place that wires tiers, used by cmd/pkgswarm and by tests, so
// that tests run the wiring the product runs.
package node
