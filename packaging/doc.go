// Package packaging builds the .deb and .rpm of pkgswarm itself, with nfpm
// as a library: no packaging tool needs to be installed.
//
// Build compiles cmd/pkgswarm of the main module (pure Go, -trimpath), runs
// the binary to generate the man page (pkgswarm gendoc man), the default
// /etc/pkgswarm/pkgswarm.toml with every serve setting commented out
// (pkgswarm gendoc config) and the bash and zsh completions, so all of them
// always match the code, and adds the hardened systemd unit and maintainer
// scripts kept under files/. Packages are reproducible: every file carries
// SOURCE_DATE_EPOCH (or the Unix epoch).
//
// The maintainer scripts never start the service on installation (it
// announces itself on the LAN): the administrator runs
// `systemctl enable --now pkgswarm` and `pkgswarm setup apt`. Removal undoes
// `pkgswarm setup` (a package manager left pointing at a proxy that is gone
// fails every download) and stops the service; purge deletes the cache.
//
// This is its own Go module (github.com/pkgswarm/pkgswarm/packaging) so that
// nfpm's dependencies stay out of the main module. Build and test it from
// this directory:
//
//	go run ./cmd/build -out dist           # dist/pkgswarm_<version>_<arch>.deb, .rpm
//	go test ./...                          # builds both and inspects them
//
// install-test.sh installs the .deb on a Debian machine, uses it with apt,
// and removes every trace again; it is run by hand, never in CI.
package packaging
