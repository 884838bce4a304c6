// Package testrepo builds real, signed apt repositories on disk and serves
// them from a real HTTP origin with an access log and fault injection.
//
// It is a test rig, importable only inside pkgswarm, used by the proxy's
// end-to-end tests and by benchmarks. Nothing is faked: keys are made and
// files signed by gpg in a private GNUPGHOME (Ed25519, which Debian 12's
// apt and gpgv accept), packages are built by dpkg-deb, and the Packages
// stanzas, Packages.gz/.xz, by-hash copies, Release (MD5Sum and SHA256),
// InRelease and Release.gpg are laid out as a Debian mirror lays them out.
// A Package's bytes are a function of its fields alone (payload from a
// seeded ChaCha8 stream, fixed timestamps via SOURCE_DATE_EPOCH), so a test
// can predict digests.
//
// The Origin serves a directory on 127.0.0.1 only, with conditional and
// Range requests as net/http's ServeContent implements them; it can stop
// (refusing connections and breaking transfers) and restart on the same
// port, and per path suffix delay, throttle, fail, cut short or tamper with
// responses without touching the files on disk. ServeTLS does the same over
// HTTPS with a fresh self-signed certificate (CertFile, CertPool).
//
// Test helpers (Build, Serve, NewKey) fail or skip the test; the *Dir
// variants return errors for use outside tests. Needed programs: gpg,
// gpgconf, dpkg-deb.
package testrepo
