// Package aptenv runs the real apt-get as a test client, isolated from the
// machine it runs on.
//
// It is a test rig, importable only inside pkgswarm: the end-to-end tests
// and benchmarks point a real apt at an origin (internal/testrepo) or at a
// pkgswarm proxy and check what apt accepted. A Client keeps its whole
// state (configuration, sources, lists, archives, an empty dpkg status)
// under one directory and hands apt a generated APT_CONFIG that replaces
// /etc/apt entirely: it never reads the host's apt configuration or
// trusted keys and never writes the host's apt or dpkg state. Each source
// trusts exactly one keyring (signed-by).
//
// apt must run as root (APT::Sandbox::User is root, so apt does not drop to
// _apt and fail to write its temporary directories). Failures are strict:
// a non-zero exit, any "E:" line and, unless allowed, any "W:" line is an
// error, because apt reports a bad signature on update partly as a
// warning. Network traffic goes only where the sources and proxy say.
package aptenv
