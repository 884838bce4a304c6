// Package repoindex parses and verifies package repository metadata and turns
// it into Expectations: for a path, the digest, size and extra proof that a
// signed root promises.
//
// Subpackages hold one format each (apt, urpmi, rpmmd) plus the shared
// decompressors. repoindex imports no other package of pkgswarm and does no
// network I/O: callers hand it bytes and keyrings; it answers with verified,
// parsed values or an error that says what failed and why. It never returns
// a value derived from unverified input as if it were verified.
//
// Every parser of untrusted input has bounded memory and work whatever the
// input, so that one input cannot take a node past 128 MiB: each
// subpackage's documentation states its bounds and why real repositories
// stay far below them. An input past a bound is refused whole with an error
// wrapping ErrTooLarge. Tests check bombs (small files that expand, claims
// of huge sizes, floods of tiny elements) against heap budgets, and fuzz
// targets bound what each parser allocates for its input.
package repoindex
