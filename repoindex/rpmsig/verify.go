package rpmsig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Info is what a verified rpm's signed main header says, plus what was
// measured while verifying it.
type Info struct {
	// NEVRA is name-version-release.arch, the form urpmi's synthesis and rpm
	// file names use (no epoch). Source packages have Arch "src".
	NEVRA                  string
	Name, Version, Release string
	Arch                   string
	Epoch                  int
	// SignerKeyID is the 16 lower-case hex digit ID of the key (primary or
	// subkey) whose signature verified.
	SignerKeyID string
	// PayloadSHA256 is the SHA-256 of the payload bytes (which matched the
	// signed PAYLOADDIGEST when that is SHA-256).
	PayloadSHA256 []byte
	// Size is the number of bytes read: the whole file.
	Size int64
}

// VerifyRPM verifies the rpm that r holds from offset 0 to its end against
// keys (see the package documentation for what is checked). It reads r with
// ReadAt only, so an *os.File's offset is left alone. The file name in
// errors comes from r's Name method when it has one. It waits as long as it
// takes for header memory (see VerifyRPMContext).
func VerifyRPM(r io.ReaderAt, keys *KeySet) (*Info, error) {
	return VerifyRPMContext(context.Background(), r, keys)
}

// VerifyRPMContext is VerifyRPM, waiting for header memory only while ctx
// allows.
func VerifyRPMContext(ctx context.Context, r io.ReaderAt, keys *KeySet) (*Info, error) {
	name := "rpm"
	if n, ok := r.(interface{ Name() string }); ok {
		name = n.Name()
	}
	return VerifyContext(ctx, io.NewSectionReader(r, 0, 1<<63-1), name, keys)
}

// Signature tags: header-only ones first, then header+payload ones.
var (
	headerSigTags  = []uint32{sigTagRSA, sigTagDSA}
	payloadSigTags = []uint32{sigTagPGP, sigTagGPG}
)

// Verify reads one rpm from r to EOF and verifies it against keys; name is
// used in errors only. See VerifyRPM; it waits as long as it takes for
// header memory.
func Verify(r io.Reader, name string, keys *KeySet) (*Info, error) {
	return VerifyContext(context.Background(), r, name, keys)
}

// VerifyContext is Verify, waiting for header memory (MaxHeaderMemory,
// shared by all verifications in the process) only while ctx allows: when
// ctx ends first, the error wraps ctx.Err() and no sentinel of this
// package.
func VerifyContext(ctx context.Context, r io.Reader, name string, keys *KeySet) (*Info, error) {
	cr := &countingReader{r: r}
	v := &verifier{name: name}
	info, err := v.run(ctx, cr, keys)
	if err != nil {
		return nil, err
	}
	info.Size = cr.n
	return info, nil
}

type verifier struct {
	name  string
	nevra string
}

func (v *verifier) what() string {
	if v.nevra != "" {
		return v.name + " (" + v.nevra + ")"
	}
	return v.name
}

func (v *verifier) fail(kind error, format string, args ...any) error {
	return fmt.Errorf("rpm %s: %w: %s", v.what(), kind, fmt.Sprintf(format, args...))
}

// failHeader reports an error of readHeader: a wait for header memory that
// ctx ended, or a malformed (maybe too large) header.
func (v *verifier) failHeader(ctx context.Context, which string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("rpm %s: %s: %w", v.what(), which, err)
	}
	hint := ""
	if errors.Is(err, repoindex.ErrTooLarge) {
		hint = "; the file is corrupt or made to exhaust memory: take it from another source"
	}
	return fmt.Errorf("rpm %s: %w: %s: %w%s", v.what(), ErrMalformed, which, err, hint)
}

// sigTag is what the signature header holds under one signature tag.
type sigTag struct {
	tag    uint32
	blob   []byte // a copy of the OpenPGP packet, nil when absent
	notBin bool   // present, but not BIN data
}

// readSignatures reads the signature header within the header budget and
// keeps only the signature packets, so that the budget is released before
// the main header is charged: a verification never holds one charge while
// waiting for another.
func (v *verifier) readSignatures(ctx context.Context, r io.Reader) ([]sigTag, error) {
	sigHdr, charged, err := readHeader(ctx, r, true, headerBudget)
	defer headerBudget.release(charged)
	if err != nil {
		return nil, v.failHeader(ctx, "signature header", err)
	}
	var out []sigTag
	for _, tags := range [][]uint32{headerSigTags, payloadSigTags} {
		for _, tag := range tags {
			blob := sigHdr.bin(tag)
			switch {
			case blob != nil && len(blob) > maxSigPacket:
				return nil, fmt.Errorf("rpm %s: %w: %w: signature tag %d holds %d bytes; no OpenPGP signature is over %d",
					v.what(), ErrBadSignature, repoindex.ErrTooLarge, tag, len(blob), maxSigPacket)
			case blob != nil:
				out = append(out, sigTag{tag: tag, blob: bytes.Clone(blob)})
			case sigHdr.has(tag):
				out = append(out, sigTag{tag: tag, notBin: true})
			}
		}
	}
	return out, nil
}

func (v *verifier) run(ctx context.Context, r io.Reader, keys *KeySet) (*Info, error) {
	var lead [leadSize]byte
	if _, err := io.ReadFull(r, lead[:]); err != nil {
		return nil, v.fail(ErrMalformed, "read lead: %v", unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint32(lead[:]); m != leadMagic {
		return nil, v.fail(ErrMalformed, "not an rpm file (magic %08x)", m)
	}
	sigTags, err := v.readSignatures(ctx, r)
	if err != nil {
		return nil, err
	}
	main, charged, err := readHeader(ctx, r, false, headerBudget)
	defer func() { headerBudget.release(charged) }()
	if err != nil {
		return nil, v.failHeader(ctx, "main header", err)
	}
	info, err := infoFrom(main)
	if err != nil {
		return nil, v.fail(ErrMalformed, "main header: %v", err)
	}
	v.nevra = info.NEVRA

	// Parse signatures and start hashing with every trusted key they name.
	type pending struct {
		tag     uint32
		sig     *pgpSig
		h       hash.Hash
		payload bool
	}
	var (
		nsigs    int
		unknown  []string
		checks   []pending
		payloadW []io.Writer
	)
	for _, st := range sigTags {
		tag := st.tag
		if st.notBin {
			return nil, v.fail(ErrBadSignature, "signature tag %d is not binary data", tag)
		}
		nsigs++
		sig, err := parseSig(st.blob)
		if err != nil {
			return nil, v.fail(ErrBadSignature, "signature tag %d: %v", tag, err)
		}
		if len(keys.lookup(sig.keyID, sig.fingerprint)) == 0 {
			unknown = append(unknown, sigIssuer(sig))
			continue
		}
		h, err := sig.prepare()
		if err != nil {
			return nil, v.fail(ErrBadSignature, "signature tag %d: %v", tag, err)
		}
		h.Write(main.raw)
		p := pending{tag: tag, sig: sig, h: h, payload: tag == sigTagPGP || tag == sigTagGPG}
		if p.payload {
			payloadW = append(payloadW, h)
		}
		checks = append(checks, p)
	}
	if nsigs == 0 {
		return nil, v.fail(ErrUnsigned, "no OpenPGP signature in the signature header; take it from the origin or sign it")
	}
	if len(checks) == 0 {
		trusted := strings.Join(keys.KeyIDs(), ", ")
		if trusted == "" {
			trusted = "none configured"
		}
		return nil, v.fail(ErrUnknownKey, "signed by key %s; trusted keys: %s", strings.Join(unknown, ", "), trusted)
	}
	// Header-only signatures can be checked before reading the payload.
	var signer string
	verifyOne := func(p pending) error {
		var lastErr error
		cands := keys.lookup(p.sig.keyID, p.sig.fingerprint)
		for i, pk := range cands {
			h := p.h
			if i < len(cands)-1 {
				// Several trusted keys share this 64-bit ID: verify on a
				// copy so the next candidate gets an unfinished hash.
				c, err := cloneHash(p.h, p.sig.hash)
				if err != nil {
					return err
				}
				h = c
			}
			if err := p.sig.verify(pk, h); err != nil {
				lastErr = err
				continue
			}
			if signer == "" {
				signer = fmt.Sprintf("%016x", pk.KeyId)
			}
			return nil
		}
		return lastErr
	}
	for _, p := range checks {
		if p.payload {
			continue
		}
		if err := verifyOne(p); err != nil {
			return nil, v.fail(ErrBadSignature, "header signature (tag %d) by key %s: %v", p.tag, sigIssuer(p.sig), err)
		}
	}

	// Stream the payload through its digest and any header+payload
	// signatures, once the main header is released.
	wantDigest := main.strs(tagPayloadDigest)
	algoTag := main.int32s(tagPayloadDigestAlgo)
	main = nil
	headerBudget.release(charged)
	charged = 0
	algo := crypto.SHA256
	if a := algoTag; len(a) > 0 {
		h, ok := pgpHash(byte(a[0]))
		if !ok || a[0] > 255 || !h.Available() || h == crypto.MD5 || h == crypto.SHA1 {
			return nil, v.fail(ErrPayloadDigest, "payload digest algorithm %d not supported", a[0])
		}
		algo = h
	}
	sum256 := sha256.New()
	writers := append([]io.Writer{sum256}, payloadW...)
	var algoH hash.Hash
	if algo != crypto.SHA256 {
		algoH = algo.New()
		writers = append(writers, algoH)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), r); err != nil {
		return nil, v.fail(ErrMalformed, "read payload: %v", err)
	}
	info.PayloadSHA256 = sum256.Sum(nil)

	if len(wantDigest) > 0 {
		got := info.PayloadSHA256
		if algoH != nil {
			got = algoH.Sum(nil)
		}
		want, err := hex.DecodeString(wantDigest[0])
		if err != nil || len(want) != len(got) {
			return nil, v.fail(ErrPayloadDigest, "signed PAYLOADDIGEST %q is not a %v digest", wantDigest[0], algo)
		}
		if !bytes.Equal(got, want) {
			return nil, v.fail(ErrPayloadDigest, "payload %v is %x, signed header says %x; the file was altered or truncated",
				algo, got, want)
		}
	}
	payloadSigned := false
	for _, p := range checks {
		if !p.payload {
			continue
		}
		if err := verifyOne(p); err != nil {
			return nil, v.fail(ErrBadSignature, "header+payload signature (tag %d) by key %s: %v", p.tag, sigIssuer(p.sig), err)
		}
		payloadSigned = true
	}
	if len(wantDigest) == 0 && !payloadSigned {
		return nil, v.fail(ErrPayloadDigest, "no PAYLOADDIGEST in the header (rpm < 4.14) and no trusted header+payload signature")
	}
	info.SignerKeyID = signer
	return info, nil
}

func sigIssuer(s *pgpSig) string {
	if len(s.fingerprint) > 0 {
		return strings.ToUpper(hex.EncodeToString(s.fingerprint))
	}
	return fmt.Sprintf("%016x", s.keyID)
}

// infoFrom reads the package identity from the main header.
func infoFrom(h *header) (*Info, error) {
	in := &Info{
		Name:    h.str(tagName),
		Version: h.str(tagVersion),
		Release: h.str(tagRelease),
		Arch:    h.str(tagArch),
	}
	for tag, s := range map[string]string{"NAME": in.Name, "VERSION": in.Version, "RELEASE": in.Release} {
		if s == "" {
			return nil, fmt.Errorf("no %s tag", tag)
		}
	}
	if !h.has(tagSourceRPM) || h.has(tagSourcePackage) {
		in.Arch = "src"
	}
	if in.Arch == "" {
		return nil, errors.New("no ARCH tag")
	}
	if e := h.int32s(tagEpoch); len(e) > 0 {
		if e[0] > 1<<31-1 {
			return nil, fmt.Errorf("epoch %d out of range", e[0])
		}
		in.Epoch = int(e[0])
	}
	in.NEVRA = in.Name + "-" + in.Version + "-" + in.Release + "." + in.Arch
	return in, nil
}

// cloneHash copies a hash's state through its BinaryMarshaler, which every
// standard library hash implements.
func cloneHash(h hash.Hash, algo crypto.Hash) (hash.Hash, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("cannot copy %v hash state", algo)
	}
	state, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	c := algo.New()
	u, ok := c.(encoding.BinaryUnmarshaler)
	if !ok {
		return nil, fmt.Errorf("cannot copy %v hash state", algo)
	}
	if err := u.UnmarshalBinary(state); err != nil {
		return nil, err
	}
	return c, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
