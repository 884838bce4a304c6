package rpmsig

import "errors"

// Sentinel errors; every error VerifyRPM and Verify return wraps exactly one
// of them (errors.Is), with the file name and, once known, the NEVRA. (An
// error of VerifyContext whose context ended while it waited for header
// memory wraps ctx.Err() instead.)
var (
	// ErrMalformed: the bytes are not a well-formed rpm (bad magic, a header
	// over MaxHeaderSize, which also wraps repoindex.ErrTooLarge, a
	// truncated file). Another source may have a good copy.
	ErrMalformed = errors.New("malformed rpm")
	// ErrUnsigned: the rpm carries no OpenPGP signature at all. pkgswarm never
	// takes such an rpm from a peer; fetch it from the origin or sign it.
	ErrUnsigned = errors.New("rpm is not signed")
	// ErrUnknownKey: the rpm is signed, but by no key in the KeySet. Import
	// the medium's pubkey (or configure the distribution key) if the signer
	// is to be trusted.
	ErrUnknownKey = errors.New("rpm is signed by no trusted key")
	// ErrBadSignature: a signature by a trusted key does not verify, or a
	// signature packet is corrupt. The file was altered after signing.
	ErrBadSignature = errors.New("rpm signature does not verify")
	// ErrPayloadDigest: the payload does not match the signed payload digest,
	// or there is no usable payload digest. The file was altered or truncated.
	ErrPayloadDigest = errors.New("rpm payload digest mismatch")
	// ErrMismatch: the rpm verified, but is not the package that was
	// expected (other NEVRA or size than the metadata promised).
	ErrMismatch = errors.New("rpm is not the expected package")
)
