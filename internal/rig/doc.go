// Package rig runs a whole pkgswarm node in a test: the product's own wiring
// (internal/node) over a store in a temporary directory, served by a real
// HTTP server, in front of a real origin server. It is the one proxy rig of
// the tests; format-specific rigs (apt repositories, urpmi trees) build on
// it.
package rig
