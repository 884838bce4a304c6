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
//
// Memory and work are bounded whatever the input; every bound fails with
// an error wrapping repoindex.ErrTooLarge that names the file and the
// bound:
//
//   - InRelease/Release: MaxReleaseSize (4 MiB, ten times Debian's largest,
//     refused before any signature work), MaxReleaseEntries (50,000 SHA256
//     entries, five times Debian's largest), 1,024 fields, 1,024
//     architectures or components; a signature at most MaxSignatureSize
//     (64 KiB) and 16 packets. ParseRelease is one pass over one copy of the
//     text, linear in its size, with a few allocations per entry; verifying
//     a Release of MaxReleaseSize peaks at about 40 MiB of heap.
//   - Packages/Sources: a line at most 8 MiB (the longest real ones,
//     Provides of Rust library packages, are some hundred KiB), read into a
//     buffer that doubles, so about three times that at most; a Sources
//     stanza, held until checked, at most 10,000 files of 255-byte names.
//     Fields are split without allocating per field, so a line of millions
//     of blanks costs the line only.
//   - a keyring file at most 16 MiB.
package apt
