// Package rpmsig verifies rpm package files against a set of trusted OpenPGP
// keys, the proof pkgswarm requires before an rpm known only by name and size
// (urpmi media) is cached or shared.
//
// VerifyRPM accepts a file only when all of the following hold:
//
//   - the lead, signature header and main header parse, each within
//     MaxHeaderSize, without reading past what the file holds;
//   - at least one OpenPGP signature over the main header (signature tag 268
//     for RSA, 267 for DSA and EdDSA, or the legacy header+payload tags 1002/1005) is
//     by a key in the KeySet and verifies; any signature by a key in the set
//     that does not verify fails the file;
//   - the payload digest in the signed main header (PAYLOADDIGEST, tag 5092,
//     algorithm in PAYLOADDIGESTALGO, tag 5093; rpm >= 4.14) equals the digest
//     of the payload bytes actually present, up to end of file. A package
//     without PAYLOADDIGEST (built by rpm < 4.14) is accepted only when a
//     header+payload signature by a trusted key covers the payload instead.
//
// It is a deliberate re-implementation rather than go-rpmutils' Verify, which
// accepts unsigned rpms and skips signature checks when given no keys, and
// whose header reader allocates whatever a header claims. Here the header
// parser is bounded and fuzzed, and the policy above is explicit. OpenPGP v4
// and v6 signature packets are verified with ProtonMail go-crypto; old v3
// packets (RSA and DSA) are parsed and verified by this package, since
// go-crypto rejects them. Key expiry and revocation are not consulted, as rpm
// 4.18 does not consult them either; trust is membership in the KeySet.
//
// Memory is bounded whatever the file claims. rpm accepts headers of up to
// 256 MiB (main) and 64 MiB (signature), which a few bytes can claim; here
// one header (index and data) is at most MaxHeaderSize, 32 MiB: one file
// costs 150-300 bytes of header, so even packages of 100,000 files (TeX
// Live, kernel sources) stay well under it, and most headers are under
// 1 MiB. A larger one is refused before it is read, with an error wrapping
// ErrMalformed and repoindex.ErrTooLarge. A header up to 4 MiB is read into
// a buffer of its claimed size; a larger one grows as its bytes arrive, so
// a short file with a lying header costs little. Headers being read by all
// verifications in the process together hold at most MaxHeaderMemory,
// 64 MiB: each header is charged (twice its size above 4 MiB, for the
// growing buffer) to a weighted semaphore before it is read, and released
// once its signatures are hashed, before the payload is streamed. Only the
// signature packets (at most 64 KiB each) are kept from the signature
// header, which is released before the main header is charged, so a
// verification never waits while holding a charge and waiters cannot
// deadlock. A verification waits for its charge: Verify and VerifyRPM as
// long as it takes (other verifications release theirs within the time
// it takes to read and hash a header), VerifyContext and VerifyRPMContext
// only while their context allows, failing with an error that wraps
// ctx.Err(). The string data of a header is scanned at most twice over, so
// tags pointing at the same bytes cannot make checking quadratic.
//
// Failures wrap ErrMalformed, ErrUnsigned, ErrUnknownKey, ErrBadSignature,
// ErrPayloadDigest or ErrMismatch (a header over its bound wraps
// repoindex.ErrTooLarge too; a wait ended by its context wraps ctx.Err()
// instead), and name the file and package. The package does no I/O beyond
// reading the reader it is given, and imports no pkgswarm package except
// repoindex and repoindex/urpmi (for the name key).
package rpmsig
