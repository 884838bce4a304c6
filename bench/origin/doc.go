// Package origin is the benchmarks' package mirror: a plain HTTP file
// server on a loopback port below 32768, with an access log and, per path,
// a byte rate limit or tampered content.
//
// It exists beside internal/testrepo's Origin because the benchmarks need
// to choose the port: apt-cacher-ng 3.7 keeps ports in a signed 16-bit
// integer, so it can neither listen on nor fetch from a port above 32767,
// and the kernel's ephemeral ports (what ":0" gives) are all above it.
//
// Files are served with http.ServeContent (conditional and Range requests,
// Last-Modified from the file), by sendfile when neither a rate limit nor
// a tamper applies. Only GET and HEAD are answered; paths are cleaned and
// confined to the directory.
package origin
