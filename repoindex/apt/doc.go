// Package apt verifies and parses the metadata of apt (Debian-style)
// repositories.
//
// The chain of trust is apt's: a Keyring of OpenPGP public keys (by default
// the keys the host's apt trusts) verifies a repository's InRelease, or its
// Release with the detached Release.gpg; the verified Release lists the
// SHA-256 and size of every index under dists/<suite>/; each Packages index
// lists the SHA-256 and size of every .deb, each Sources index those of every
// source file.
//
// VerifyInRelease and VerifyRelease return a Release only when a signature by
// a key in the keyring verifies and the Release has not passed its
// Valid-Until; the Release is parsed from the signed bytes alone, never from
// text around the signature. Their errors wrap ErrUnknownKey (signed, but by
// no trusted key: the repository is untrusted), ErrBadSignature (unsigned,
// malformed, or a trusted key's signature does not verify; ErrKeyExpired and
// ErrKeyRevoked refine it) or ErrExpired, for errors.Is. Signature checks use
// github.com/ProtonMail/go-crypto, which reads every key of Debian's archive
// keyrings, the Ed25519 ones included.
//
// ParsePackages and ParseSources stream an index stanza by stanza without
// holding it in memory, and refuse file names that are absolute or contain
// ".." segments, so a hostile index cannot point at a path outside the
// repository. The parsers take uncompressed data (see package decompress)
// and do no I/O beyond reading what they are given.
package apt
