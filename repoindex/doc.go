// Package repoindex parses and verifies package repository metadata and turns
// it into Expectations: for a path, the digest, size and extra proof that a
// signed root promises.
//
// Subpackages hold one format each (apt, urpmi, rpmmd) plus the shared
// decompressors. repoindex imports no other package of pkgswarm and does no
// network I/O: callers hand it bytes and keyrings; it answers with verified,
// parsed values or an error that says what failed and why. It never returns
// a value derived from unverified input as if it were verified.
package repoindex
