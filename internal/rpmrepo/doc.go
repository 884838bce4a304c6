// Package rpmrepo is a test rig that builds real, signed rpm repositories on
// disk: rpms made by rpmbuild from generated spec files, signed by rpmsign
// with a throw-away gpg key, laid out as a Mageia-shaped urpmi tree
// (distrib/<ver>/<arch>/media/<section>/<repo>/ with per-medium media_info/
// holding synthesis.hdlist.cz, MD5SUM and pubkey, plus the global
// media/media_info/media.cfg) and, in each medium directory, rpm-md metadata
// made by createrepo_c.
//
// The synthesis and MD5SUM files are written by this package from what
// `rpm -qp --queryformat` reports about each built rpm, never from pkgswarm's
// own parsers, so tests of those parsers check against an independent source.
//
// It needs the external programs rpmbuild, rpmsign, rpm, rpmkeys (Debian
// package rpm), createrepo_c (Debian package createrepo-c) and gpg. Every
// function takes a testing.TB and fails the test with the tool's output when a
// tool fails; temporary gpg homes and agents are cleaned up with t.Cleanup.
// It is for tests only and never touches the network.
package rpmrepo
