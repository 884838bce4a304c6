// Package rpmsig verifies rpm package files against a set of trusted OpenPGP
// keys, the proof pkgswarm requires before an rpm known only by name and size
// (urpmi media) is cached or shared.
//
// VerifyRPM accepts a file only when all of the following hold:
//
//   - the lead, signature header and main header parse, within rpm's own size
//     limits, without reading past what the file holds;
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
// Failures wrap ErrMalformed, ErrUnsigned, ErrUnknownKey, ErrBadSignature,
// ErrPayloadDigest or ErrMismatch, and name the file and package. The package
// does no I/O beyond reading the reader it is given, and imports no pkgswarm
// package except repoindex and repoindex/urpmi (for the name key).
package rpmsig
