package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// The peer protocol (docs/design.md, "LAN peers"): other pkgswarm nodes ask
// for blobs a signed chain vouches for, by digest or (urpmi rpms) by name
// key. A node serves only shareable blobs, and downloads in flight whose
// expectation comes from a signed chain (the asking node verifies what it
// gets; a download that fails is aborted here too).

// Peer protocol states, sent in the X-Pkgswarm-State header of an answer on
// /_pkgswarm/v1/blob/sha256/<hex>.
const (
	StateComplete = "complete" // a verified blob: served with Range support
	StateFetching = "fetching" // a download whose bytes are flowing: streamed as they arrive
	StateStarting = "starting" // a download past its LAN round, on its way to the swarm or origin
	StatePending  = "pending"  // a download still asking its LAN peers
)

func (s *Server) peerRoutes() {
	s.mux.HandleFunc("GET /_pkgswarm/v1/node", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": s.cfg.NodeID, "version": s.cfg.Version})
	})
	s.mux.HandleFunc("GET /_pkgswarm/v1/blob/sha256/{hex}", s.serveBlobToPeer) // GET also matches HEAD
	s.mux.HandleFunc("GET /_pkgswarm/v1/rpm/{key}", s.serveNameToPeer)
}

// serveBlobToPeer answers GET/HEAD /_pkgswarm/v1/blob/sha256/<hex>: a
// shareable blob (Range supported), or a signed download in flight
// (streamed as it arrives), so that two nodes of a site never both fetch
// one file from the origin. Anything else is 404.
func (s *Server) serveBlobToPeer(w http.ResponseWriter, r *http.Request) {
	d, err := store.ParseDigest(strings.ToLower(r.PathValue("hex")))
	if err != nil {
		http.Error(w, "pkgswarm: bad digest: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// The downloads in flight first, the blobs second: a download marks
	// its blob shareable before it leaves the table (fetch's
	// Request.Learn), so one that ends between the two looks is found by
	// the second. (The other order answered 404 in that instant; the peer
	// took it for a lie and banned this node.)
	testHookPeerLookup()
	f := s.fetch.Flight(fetch.DigestKey(d))
	if f == nil || !f.Peers() {
		if s.st.Shareable(d) && s.serveSharedBlob(w, r, d) {
			return
		}
		http.Error(w, "pkgswarm: no verified blob sha256:"+d.String(), http.StatusNotFound)
		return
	}
	s.streamFlightToPeer(w, r, f)
}

// testHookPeerLookup runs in serveBlobToPeer before it looks at the
// downloads in flight (a test ends a download there).
var testHookPeerLookup = func() {}

func (s *Server) streamFlightToPeer(w http.ResponseWriter, r *http.Request, f *fetch.Flight) {
	select {
	case <-f.Done():
		if f.Err() == nil && s.serveSharedBlob(w, r, f.Digest()) {
			return
		}
	default:
	}
	state := StatePending
	if f.Leading() {
		state = StateStarting
	}
	select {
	case <-f.Ready():
		state = StateFetching
	default:
	}
	select {
	case <-f.Done():
		if err := f.Err(); err != nil {
			http.Error(w, "pkgswarm: download failed: "+err.Error(), http.StatusNotFound)
			return
		}
		state = StateFetching // committed: the reader reads the blob
	default:
	}
	h := w.Header()
	h.Set("X-Pkgswarm-State", state)
	// What a multi-source downloader needs to pick this node for a range:
	// how much of the file it holds (a download is a growing prefix), where
	// its bytes come from (a node reading from the origin or the swarm
	// brings new bytes; one reading from LAN peers relays them), which tier
	// it is trying, and how many peer transfers it serves now.
	h.Set("X-Pkgswarm-Have", strconv.FormatInt(f.Written(), 10))
	h.Set("X-Pkgswarm-Source", f.Source())
	h.Set("X-Pkgswarm-Stage", f.Stage())
	h.Set("X-Pkgswarm-Uploads", strconv.FormatInt(s.peerUploads.Load(), 10))
	size := f.Size()
	if r.Method == http.MethodHead {
		if size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(size, 10))
		}
		return
	}
	first, last := int64(0), size-1
	closed := false // a closed range: a multi-source reader asks for a chunk
	if rg := r.Header.Get("Range"); rg != "" {
		a, b, ok := parseOneRange(rg)
		closed = ok && b >= 0
		if !ok || size < 0 || a >= size {
			http.Error(w, "pkgswarm: only one range (bytes=N- or bytes=N-M) is served from a download in flight", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		first = a
		if b >= 0 && b < last {
			last = b
		}
	}
	// A request for bytes this node does not hold yet waits here for its
	// own download. Only one such request per download is taken: the
	// others ask a peer that already has those bytes, or one that is
	// itself waiting, so that the newest bytes flow down a chain of nodes
	// instead of out of this one to every peer (lan's multi-source reader).
	waits := closed && last >= f.Written()
	// One waiting request per tier of the asker: a site leader relays the
	// newest bytes to one peer of its own site and one of another site.
	slot := f.Key() + "|" + r.Header.Get("X-Pkgswarm-Tier")
	asker, _, _ := net.SplitHostPort(r.RemoteAddr)
	if waits && !s.takeFrontier(slot, asker) {
		h.Set("X-Pkgswarm-Busy", "frontier")
		http.Error(w, "pkgswarm: already serving the newest bytes of this download to a peer", http.StatusServiceUnavailable)
		return
	} else if waits {
		defer s.releaseFrontier(slot, asker)
	}
	s.peerUploads.Add(1)
	defer s.peerUploads.Add(-1)
	select {
	case <-f.Ready():
	case <-r.Context().Done():
		return
	}
	fo := f.NewReader(r.Context())
	defer fo.Close()
	if first > 0 {
		if _, err := fo.Seek(first, io.SeekStart); err != nil {
			http.Error(w, "pkgswarm: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	n := int64(-1) // to the end
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(last-first+1, 10))
		// Bytes are sent as they arrive; a range that ends at the file's
		// last byte waits for the digest to match (store.Follower holds
		// the final byte back).
		n = last - first + 1
	}
	if first > 0 || (size >= 0 && last < size-1) {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		w.WriteHeader(http.StatusPartialContent)
	}
	if _, err := fo.CopyTo(w, n); err != nil && !errors.Is(err, context.Canceled) {
		panic(http.ErrAbortHandler)
	}
}

// serveSharedBlob serves a held blob to a peer (Range supported). It
// reports false when the store does not hold it.
func (s *Server) serveSharedBlob(w http.ResponseWriter, r *http.Request, d store.Digest) bool {
	f, _, err := s.st.OpenBlob(d)
	if err != nil {
		return false
	}
	defer f.Close()
	w.Header().Set("ETag", etag(d))
	w.Header().Set("X-Pkgswarm-State", StateComplete)
	w.Header().Set("X-Pkgswarm-Uploads", strconv.FormatInt(s.peerUploads.Load(), 10))
	if r.Method != http.MethodHead {
		s.peerUploads.Add(1)
		defer s.peerUploads.Add(-1)
	}
	http.ServeContent(w, r, "", time.Time{}, f)
	return true
}

// maxFrontier is how many peer requests per download and tier of the
// asker (X-Pkgswarm-Tier: lan, swarm) may wait for bytes this node does
// not hold yet.
const maxFrontier = 1

// frontierGrace keeps a freed frontier place for the peer that just held
// it: it asks for the next chunk at once, and a chain of nodes stays a
// chain instead of reshuffling at every chunk.
const frontierGrace = 300 * time.Millisecond

// frontierSlot is the frontier places of one download and tier.
type frontierSlot struct {
	n        int       // requests waiting now
	reserved string    // the peer (IP) the next place is kept for
	until    time.Time // … until then
}

func (s *Server) takeFrontier(key, peer string) bool {
	s.frontierMu.Lock()
	defer s.frontierMu.Unlock()
	if s.frontier == nil || len(s.frontier) > 10000 {
		s.frontier = map[string]*frontierSlot{}
	}
	fs := s.frontier[key]
	if fs == nil {
		fs = &frontierSlot{}
		s.frontier[key] = fs
	}
	if fs.n >= maxFrontier || (fs.reserved != "" && fs.reserved != peer && time.Now().Before(fs.until)) {
		return false
	}
	fs.n++
	fs.reserved = ""
	return true
}

func (s *Server) releaseFrontier(key, peer string) {
	s.frontierMu.Lock()
	defer s.frontierMu.Unlock()
	fs := s.frontier[key]
	if fs == nil {
		return
	}
	fs.n--
	fs.reserved, fs.until = peer, time.Now().Add(frontierGrace)
}

// parseOneRange parses "bytes=N-" (last = -1) and "bytes=N-M", the ranges
// served from a download in flight.
func parseOneRange(rg string) (first, last int64, ok bool) {
	rest, ok := strings.CutPrefix(rg, "bytes=")
	if !ok || strings.Contains(rest, ",") {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, false
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false
	}
	if b == "" {
		return first, -1, true
	}
	last, err = strconv.ParseInt(b, 10, 64)
	if err != nil || last < first {
		return 0, 0, false
	}
	return first, last, true
}

// serveNameToPeer answers GET/HEAD /_pkgswarm/v1/rpm/<name key>: the
// verified rpm a name key maps to (Range supported), with its digest in
// X-Pkgswarm-Sha256, or 404.
func (s *Server) serveNameToPeer(w http.ResponseWriter, r *http.Request) {
	key := strings.ToLower(r.PathValue("key"))
	d, err := s.st.Name(key)
	if err != nil || !s.st.Shareable(d) {
		http.Error(w, "pkgswarm: no verified rpm for name key "+key, http.StatusNotFound)
		return
	}
	f, _, err := s.st.OpenBlob(d)
	if err != nil {
		http.Error(w, "pkgswarm: no verified rpm for name key "+key, http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/x-rpm")
	w.Header().Set("ETag", etag(d))
	w.Header().Set("X-Pkgswarm-Sha256", d.String())
	http.ServeContent(w, r, "", time.Time{}, f)
}
