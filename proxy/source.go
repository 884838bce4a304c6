package proxy

import (
	"context"
	"errors"
	"io"

	"github.com/pkgswarm/pkgswarm/repoindex"
)

// ErrNotFound, wrapped, means a source does not have the file: the pipeline
// tries the next source without penalising this one.
var ErrNotFound = errors.New("not found")

// Request is one file the pipeline wants, as a source sees it.
type Request struct {
	// URL is the canonical origin URL (the cache key for unverified files).
	URL string
	// FetchURL is the URL this attempt fetches from: URL itself, a mirror's
	// equivalent or a by-hash alternative. Only the origin source uses it.
	FetchURL string
	// Expect is what a verified root promises; nil for unverified files,
	// which peer sources never see.
	Expect *repoindex.Expectation
}

// Source is one tier of the fetch pipeline (DESIGN.md: cache → LAN → swarm →
// origin). The pipeline, not the source, verifies what comes back.
type Source interface {
	// Name is the tier's name: "lan", "swarm", "origin". It is also the
	// metrics label.
	Name() string
	// Fetch returns the file's bytes starting at offset (a resumed attempt
	// after another source failed mid-stream). A source that cannot start
	// at offset may return the whole file with start 0; the pipeline skips
	// what it already has. It returns an error wrapping ErrNotFound when it
	// does not have the file.
	Fetch(ctx context.Context, req *Request, offset int64) (body io.ReadCloser, start int64, err error)
}

// Penalizer is implemented by sources whose members (peers) can be banned.
// The pipeline calls Penalize once per attempt whose bytes were part of a
// file that failed verification.
type Penalizer interface {
	Penalize(req *Request, attempt Attempt, reason string)
}

// Attempt identifies who served an attempt, for penalties and logs.
type Attempt struct {
	Source string
	// Peer is the member of the source that served the bytes (a peer's URL,
	// an origin host); empty when the source has none.
	Peer string
}

// PeerReporter is optionally implemented by a body returned from Fetch to
// say which peer served it.
type PeerReporter interface {
	Peer() string
}
