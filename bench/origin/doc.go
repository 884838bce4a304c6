// Package origin is the benchmarks' package mirror: a plain HTTP file
// server on a loopback port below 32768, with an access log (per request,
// per file served, connections accepted), per-path tampered content, and
// two kinds of pacing: a byte rate per response (Throttle, per path or for
// all) and a byte rate per connection over all its responses
// (PaceConnections), as many public mirrors and CDNs pace.
//
// It exists beside internal/testrepo's Origin because the benchmarks need
// to choose the port: apt-cacher-ng 3.7 keeps ports in a signed 16-bit
// integer, so it can neither listen on nor fetch from a port above 32767,
// and the kernel's ephemeral ports (what ":0" gives) are all above it.
//
// Files are served with http.ServeContent (conditional and Range requests,
// Last-Modified from the file), by sendfile when neither a rate nor a
// tamper applies. Only GET and HEAD are answered; paths are cleaned and
// confined to the directory.
//
// Relay puts a far-away network path in front of it (or of any TCP
// address) on a machine without tc netem: a one-way delay in each
// direction, a connection set-up that costs a round trip, and optionally
// a rate shared by all connections, as one uplink. See Relay for what it
// does not emulate.
package origin
