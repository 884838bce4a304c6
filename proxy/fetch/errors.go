package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Sentinel errors. Sources and callers wrap them with %w; test with errors.Is.
var (
	// ErrNotFound means a source does not have the file: the pipeline tries
	// the next source without penalising this one.
	ErrNotFound = errors.New("not found")
	// ErrNotModified is what an origin returns for a conditional request
	// whose held copy is current (HTTP 304).
	ErrNotModified = errors.New("not modified")
	// ErrOffline is returned instead of contacting an origin in offline mode.
	ErrOffline = errors.New("offline: origins are not contacted (--offline)")
	// ErrStalled means a source sent nothing for Config.StallTimeout.
	ErrStalled = errors.New("source stalled")
	// ErrTooSlow means a peer sent less than Config.MinRate in a
	// Config.RateWindow.
	ErrTooSlow = errors.New("source too slow")
	// ErrTooLarge means a source sent more bytes than the file may have.
	ErrTooLarge = errors.New("more bytes than allowed")
	// ErrForbidden means an origin refused by policy: an address or port
	// pkgswarm does not fetch from (not an open proxy).
	ErrForbidden = errors.New("forbidden origin")
	// ErrNoSpace means the store's disk is full.
	ErrNoSpace = errors.New("no space left in the cache directory")
)

// VerifyError is a file whose bytes arrived and failed verification against
// its expectation. Err is the cause (a digest or size mismatch, or what
// Expectation.Check returned, e.g. an error wrapping rpmsig.ErrUnsigned).
type VerifyError struct {
	URL     string
	SHA256  string    // expected digest, "" when the expectation has none
	Sources []Contrib // every source whose bytes were part of the failing file
	Err     error
}

func (e *VerifyError) Error() string {
	if len(e.Sources) == 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (from %s)", e.Err, contribString(e.Sources))
}

func (e *VerifyError) Unwrap() error { return e.Err }

// ErrDigestMismatch is wrapped by a VerifyError whose bytes hash to another
// digest or have another size than the expectation.
var ErrDigestMismatch = store.ErrDigestMismatch

// IsNotFound reports whether err means that no source has the file.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsForbidden reports whether err is an origin refused by policy.
func IsForbidden(err error) bool { return errors.Is(err, ErrForbidden) }

// IsVerify reports whether err is a verification failure.
func IsVerify(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}

// IsUnavailable reports whether err means the origin could not be reached:
// offline mode, a network error or a timeout. A held copy may then be served.
func IsUnavailable(err error) bool {
	var ne net.Error
	var se *StatusError
	switch {
	case errors.Is(err, ErrOffline), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return true
	case errors.As(err, &se):
		return se.Code >= 500
	}
	return false
}

// StatusError is an origin answer that is neither the file nor "not found".
type StatusError struct {
	URL    string
	Status string // e.g. "503 Service Unavailable"
	Code   int
}

func (e *StatusError) Error() string { return "origin " + e.URL + ": " + e.Status }

// Contrib names one source whose bytes went into a download.
type Contrib struct {
	Source string // the tier's name (a label)
	Peer   string // the member that served them: a peer, an origin URL
}

func (c Contrib) String() string {
	if c.Peer == "" {
		return c.Source
	}
	return c.Source + "(" + c.Peer + ")"
}

func contribString(cs []Contrib) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ",")
}
