package fetch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// Flight is one download in progress. Every request for the same key while it
// runs joins it: one download, many readers.
type Flight struct {
	key   string
	req   *Request
	start time.Time
	w     *store.Writer
	size  atomic.Int64 // expected or announced size, -1 when unknown
	side  SideHasher   // a second hash over the bytes (Config.SideHash); nil if none

	ready     chan struct{} // closed once bytes may flow (a source answered) or the flight ended
	verified  chan struct{} // closed when the bytes passed verification, before the durable commit
	done      chan struct{} // closed when finished; err, digest, meta are then final
	readyOnce sync.Once
	leading   atomic.Bool  // past the site tier: this node fetches for the site
	stage     atomic.Int32 // the role of the attempt running now (role)

	mu     sync.Mutex // protects source, peer and meta
	source string     // tier serving (then, having served) the bytes
	peer   bool       // source is a peer tier (site or wide), not the origin
	meta   Meta

	err    error
	digest store.Digest
}

// Key is the flight's coalescing key (see KeyOf).
func (f *Flight) Key() string { return f.key }

// URL is the canonical URL of the request that started the flight.
func (f *Flight) URL() string { return f.req.URL }

// Started is when the download began.
func (f *Flight) Started() time.Time { return f.start }

// Size is the file's size when known (the expectation's, else what the
// source announced), else -1.
func (f *Flight) Size() int64 { return f.size.Load() }

// Written is how many bytes the download holds now.
func (f *Flight) Written() int64 { return f.w.Size() }

// Ready is closed once a source answered (bytes may flow) or the flight ended.
func (f *Flight) Ready() <-chan struct{} { return f.ready }

// Verified is closed when the bytes passed verification, while the commit
// makes them durable: a reader may be answered from the download then.
func (f *Flight) Verified() <-chan struct{} { return f.verified }

// Done is closed when the flight finished; Err and Digest are then final.
func (f *Flight) Done() <-chan struct{} { return f.done }

// Err is the flight's outcome once Done is closed: nil when the file was
// committed (or a held copy confirmed).
func (f *Flight) Err() error {
	<-f.done
	return f.err
}

// Digest is the committed (or confirmed held) blob once Done is closed.
func (f *Flight) Digest() store.Digest {
	<-f.done
	return f.digest
}

// Leading reports whether the download went past the site tier: it is on its
// way to the wide tier or the origin, fetching for the whole site.
func (f *Flight) Leading() bool { return f.leading.Load() }

// Stage names the tier the download is trying now: "site" (asking its LAN
// peers), "wide" (the swarm, beyond the site) or "origin". Peers use it to
// elect one node per site, and one per fleet, to fetch a file from the
// origin.
func (f *Flight) Stage() string {
	switch role(f.stage.Load()) {
	case roleWide:
		return "wide"
	case roleOrigin:
		return "origin"
	}
	return "site"
}

// Peers reports whether the download's expectation comes from a signed
// chain (Request.Peers): only such downloads may be streamed to peers.
func (f *Flight) Peers() bool { return f.req.Peers && f.req.Expect != nil }

// Source names the tier serving (or that served) the bytes.
func (f *Flight) Source() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.source
}

// Meta is the response metadata of a file without an expectation.
func (f *Flight) Meta() Meta {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta
}

// NewReader returns a reader over the download from offset 0. It returns the
// final byte only once the file verified, and an error (never io.EOF) if the
// download fails. The caller closes it.
func (f *Flight) NewReader(ctx context.Context) *store.Follower { return f.w.NewFollower(ctx) }

// FromPeer reports whether the bytes now arriving come from a peer tier (a
// LAN or swarm member) rather than the origin or the cache: the front holds
// a peer's bytes of a small file until their verdict.
func (f *Flight) FromPeer() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peer
}

func (f *Flight) answered(source string, peer bool, meta *Meta) {
	f.mu.Lock()
	f.source, f.peer = source, peer
	if meta != nil {
		f.meta = *meta
	}
	f.mu.Unlock()
	f.readyOnce.Do(func() { close(f.ready) })
}

// Transfer describes a download in progress, for the status page.
type Transfer struct {
	URL     string    `json:"url"`
	Source  string    `json:"source"`
	Bytes   int64     `json:"bytes"`
	Size    int64     `json:"size"`
	Started time.Time `json:"started"`
}
