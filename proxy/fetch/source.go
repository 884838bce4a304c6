package fetch

import (
	"context"
	"io"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
	"github.com/pkgswarm/pkgswarm/repoindex"
)

// Request is one file the pipeline is asked for.
type Request struct {
	// URL is the canonical origin URL: what the client asked for, the cache
	// key of files without an expectation, and the first origin candidate.
	URL string
	// Alternates are other URLs with the same bytes, tried after URL and its
	// mirrors (apt's by-hash name of an index, for a mirror caught mid-sync).
	Alternates []string
	// Expect is what a verified chain promises about the file. Nil means the
	// file is fetched by URL from the origin only and committed by whatever
	// digest it has.
	Expect *repoindex.Expectation
	// Peers allows the peer tiers. The caller sets it only when Expect comes
	// from a signed chain; it is ignored without an Expect.
	Peers bool
	// Revalidate applies to files without an expectation that the store holds
	// by URL: the held copy is served for this long after it was fetched,
	// then revalidated with a conditional GET. Zero means it never changes
	// (served as long as it is held).
	Revalidate time.Duration
	// NoRecord, for files without an expectation, streams the file without
	// recording it by URL: the next request fetches it again. For files of a
	// trusted repository that no signed index lists (yet).
	NoRecord bool
	// MaxSize bounds files without an expectation (and expectations without a
	// size). Zero means Config.MaxUnverified.
	MaxSize int64
	// Learn, if set, is called with the file's digest after it was committed
	// and on every answer from the store: the trust package records what the
	// file teaches (marks it shareable, parses it as an index). It is called
	// from any goroutine, for every hit, so it must be cheap when repeated.
	// After a download it returns before the flight leaves the table
	// (Fetcher.Flight): whoever finds no flight finds what Learn recorded.
	Learn func(d store.Digest)
	// Line is where the request stands in its client's pipeline (zero: in
	// none). The origin pool uses it to keep a client's requests in the order
	// it reads the answers (proxy/fetch/origin).
	Line Line
}

// Line places a request among those one client sent on one connection.
// The client reads the answers in the order it asked, so no request can
// reach it before the ones it sent earlier on that connection: a request
// queued behind an earlier one of its own line, however large, waits for
// nothing its client would not wait for anyway.
type Line struct {
	// Conn names the client connection: nonzero, unique within the process.
	Conn uint64
	// Seq is the request's place on that connection: 1, 2, … in the order
	// the client sent them.
	Seq int
}

// Before reports whether l was sent earlier than m on the same client
// connection.
func (l Line) Before(m Line) bool { return l.Conn != 0 && l.Conn == m.Conn && l.Seq < m.Seq }

// Source is one tier of the pipeline. The pipeline, not the source, verifies
// what comes back.
type Source interface {
	// Name labels the tier in logs and metrics ("lan", "swarm", "origin").
	// The pipeline chooses tiers by the Config field they are in, never by
	// name.
	Name() string
	// Fetch returns the file's bytes from a.Offset (a resumed attempt after
	// another source failed mid-stream). A source that cannot start there may
	// return the file from an earlier offset (Body.Start); the pipeline skips
	// what it holds. It returns an error wrapping ErrNotFound when it does not
	// have the file, ErrNotModified when a.Conditional is current, and is
	// called once per attempt, from the download's goroutine.
	Fetch(ctx context.Context, a *Attempt) (*Body, error)
}

// Attempt is one try of one source for a Request.
type Attempt struct {
	Request *Request
	// URL is where this attempt fetches from: an origin candidate (the URL, a
	// mirror's equivalent, an alternate); Request.URL for peer tiers.
	URL string
	// Offset is where the bytes should start.
	Offset int64
	// Conditional, for origin attempts of files without an expectation, is
	// the held copy to revalidate (If-None-Match / If-Modified-Since).
	Conditional *store.URLEntry
}

// Body is a source's answer.
type Body struct {
	io.ReadCloser
	// Start is the offset of the first byte of ReadCloser.
	Start int64
	// Size is the file's total size when the source says (Content-Length of a
	// whole answer, the total of a Content-Range), else -1.
	Size int64
	// Meta is the response metadata kept for files cached by URL.
	Meta Meta
	// Peer names the member that serves the bytes (a peer's address, the
	// origin URL), for penalties and logs.
	Peer string
}

// Meta is what a response carries besides its bytes.
type Meta struct {
	ContentType, LastModified, ETag string
}

// Penalizer is implemented by sources whose members (peers) can be banned.
// The pipeline calls Penalize once per attempt whose bytes were part of a
// file that failed verification, and once per attempt cut for stalling or
// sending too slowly, from the download's goroutine.
type Penalizer interface {
	Penalize(a *Attempt, peer string, reason error)
}

// Observer receives the pipeline's events, for metrics, logs and the status
// page. Each method is called from the download's goroutine and must not
// block.
type Observer interface {
	// Fetched is called once per attempt with the bytes it added.
	Fetched(source string, n int64)
	// VerifyFailed is called once per file that failed verification.
	VerifyFailed(err *VerifyError)
	// SourceFailed is called once per attempt that failed for another reason
	// than "not found".
	SourceFailed(source, url string, err error)
}

type nopObserver struct{}

func (nopObserver) Fetched(string, int64)              {}
func (nopObserver) VerifyFailed(*VerifyError)          {}
func (nopObserver) SourceFailed(string, string, error) {}
