package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/store"
)

// LANPeer is another pkgswarm node on the LAN.
type LANPeer struct {
	ID  string // node id
	URL string // base URL, "http://ip:port"
}

// PeerSet is the live set of LAN peers (discovery implements it through an
// adapter in cmd). Peers is called once per lookup and must be cheap.
type PeerSet interface {
	Peers() []LANPeer
	// Ban keeps a peer out of Peers until the given time.
	Ban(id string, until time.Time, reason string)
}

// Peer protocol states, sent in the X-Pkgswarm-State header of a HEAD on
// /_pkgswarm/v1/blob/sha256/<hex>.
const (
	stateComplete = "complete" // a verified blob: served with Range support
	stateFetching = "fetching" // a download whose bytes are flowing: streamed as they arrive
	stateStarting = "starting" // a download past its LAN round, on its way to the swarm or origin
	statePending  = "pending"  // a download still asking its LAN peers
)

// LANSource is the LAN tier of the fetch pipeline: it asks every peer in
// parallel whether it holds (or is fetching) a digest and streams from the
// best answer. Only files with a signed SHA-256 are ever asked for.
type LANSource struct {
	Peers  PeerSet
	NodeID string // this node's id: breaks ties between two nodes fetching at once
	// Client talks to peers. Nil means a client with short timeouts that
	// ignores proxy environment variables.
	Client *http.Client
	// Budget bounds one round of HEAD probes. Zero means 500ms.
	Budget time.Duration
	// Wait bounds how long a node waits for a peer that is about to fetch
	// the same file (see Fetch). Zero means 15s.
	Wait time.Duration
	// BanFor is how long a peer that sent bad bytes is banned. Zero means
	// 10 minutes.
	BanFor time.Duration

	once sync.Once
}

var _ Source = (*LANSource)(nil)
var _ Penalizer = (*LANSource)(nil)

func (l *LANSource) init() {
	l.once.Do(func() {
		if l.Client == nil {
			l.Client = &http.Client{Transport: &http.Transport{
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
				MaxIdleConnsPerHost:   8,
				IdleConnTimeout:       time.Minute,
				ResponseHeaderTimeout: 10 * time.Second,
				DisableCompression:    true,
			}}
		}
		if l.Budget <= 0 {
			l.Budget = 500 * time.Millisecond
		}
		if l.Wait <= 0 {
			l.Wait = 15 * time.Second
		}
		if l.BanFor <= 0 {
			l.BanFor = 10 * time.Minute
		}
	})
}

// Name implements Source.
func (l *LANSource) Name() string { return "lan" }

type probeResult struct {
	peer  LANPeer
	state string
}

// Fetch implements Source.
func (l *LANSource) Fetch(ctx context.Context, req *Request, offset int64) (io.ReadCloser, int64, error) {
	l.init()
	var what string // the peer protocol path of the file
	switch {
	case req.Expect == nil:
		return nil, 0, fmt.Errorf("lan: %s is not vouched for by a verified root: %w", req.URL, ErrNotFound)
	case req.Expect.SHA256 != nil:
		what = "/_pkgswarm/v1/blob/sha256/" + req.Expect.Hex()
	case req.Expect.Key != "" && req.Expect.Size >= 0:
		// Known by name and size only (urpmi): the pipeline runs the rpm
		// signature and payload check on whatever a peer sends.
		what = "/_pkgswarm/v1/rpm/" + req.Expect.Key
	default:
		return nil, 0, fmt.Errorf("lan: %s has no lookup key: %w", req.URL, ErrNotFound)
	}
	// One node of the site fetches a file the others miss at the same
	// moment; the rest stream from it. A peer whose download is past its
	// LAN round ("starting") is waited for whatever its id. Among peers
	// still in their LAN round ("pending"), the one ranked first by
	// rendezvous hashing of (node id, file) goes on, independent of who
	// asked first; the others wait for it to start.
	deadline := time.Now().Add(l.Wait)
	confirmed := false
	for {
		peers := l.Peers.Peers()
		if len(peers) == 0 {
			return nil, 0, fmt.Errorf("lan: no peers: %w", ErrNotFound)
		}
		results := l.probe(ctx, peers, what)
		var complete, fetching []LANPeer
		waitFor, contended := false, false
		myRank := rendezvous(l.NodeID, what)
		for _, r := range results {
			switch r.state {
			case stateComplete:
				complete = append(complete, r.peer)
			case stateFetching:
				fetching = append(fetching, r.peer)
			case stateStarting:
				waitFor = true
			case statePending:
				if rendezvous(r.peer.ID, what) > myRank {
					waitFor = true
				} else {
					contended = true
				}
			}
		}
		// Spread the load: any holder will do, not always the fastest to
		// answer (which would serve the whole site).
		rand.Shuffle(len(complete), func(i, j int) { complete[i], complete[j] = complete[j], complete[i] })
		rand.Shuffle(len(fetching), func(i, j int) { fetching[i], fetching[j] = fetching[j], fetching[i] })
		for _, p := range append(complete, fetching...) {
			body, start, err := l.get(ctx, p, what, offset)
			if err == nil {
				return body, start, nil
			}
		}
		if !waitFor && contended && !confirmed {
			// This node outranks every peer it saw in its LAN round, but a
			// peer that probed before this node's download existed saw no
			// contender and may be on its way to the origin already: look
			// once more before going too.
			confirmed = true
			waitFor = true
		} else if !waitFor || time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("lan: no peer of %d holds %s: %w", len(peers), what, ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rendezvous ranks a node for a file (highest random weight hashing): every
// node computes the same ranking, and different files get different
// leaders.
func rendezvous(nodeID, what string) uint64 {
	h := sha256.Sum256([]byte(nodeID + "\x00" + what))
	return binary.BigEndian.Uint64(h[:8])
}

// probe sends HEAD to every peer at once and returns the answers that came
// within the budget; it returns early once a peer holds the whole file.
func (l *LANSource) probe(ctx context.Context, peers []LANPeer, what string) []probeResult {
	ctx, cancel := context.WithTimeout(ctx, l.Budget)
	defer cancel()
	ch := make(chan probeResult, len(peers))
	for _, p := range peers {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodHead, peerURL(p, what), nil)
			if err != nil {
				ch <- probeResult{peer: p}
				return
			}
			resp, err := l.Client.Do(req)
			if err != nil {
				ch <- probeResult{peer: p}
				return
			}
			resp.Body.Close()
			state := ""
			if resp.StatusCode == http.StatusOK {
				state = resp.Header.Get("X-Pkgswarm-State")
				if state == "" {
					state = stateComplete
				}
			}
			ch <- probeResult{peer: p, state: state}
		}()
	}
	var out []probeResult
	var settle <-chan time.Time
	for range peers {
		select {
		case r := <-ch:
			out = append(out, r)
			if r.state == stateComplete && settle == nil {
				// A holder answered: give the others a moment, so the
				// choice among holders is not always the fastest one.
				settle = time.After(probeSettle)
			}
		case <-settle:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// probeSettle is how long probe keeps listening after the first holder.
const probeSettle = 20 * time.Millisecond

func peerURL(p LANPeer, what string) string {
	return strings.TrimRight(p.URL, "/") + what
}

func (l *LANSource) get(ctx context.Context, p LANPeer, what string, offset int64) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(p, what), nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := l.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return &peerBody{ReadCloser: resp.Body, peer: p.ID + "@" + p.URL}, 0, nil
	case http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("lan peer %s: bad Content-Range %q", p.URL, resp.Header.Get("Content-Range"))
		}
		return &peerBody{ReadCloser: resp.Body, peer: p.ID + "@" + p.URL}, start, nil
	}
	resp.Body.Close()
	return nil, 0, fmt.Errorf("lan peer %s: %s", p.URL, resp.Status)
}

// Penalize bans the peer that sent bytes failing verification.
func (l *LANSource) Penalize(req *Request, a Attempt, reason string) {
	l.init()
	id, _, _ := strings.Cut(a.Peer, "@")
	if id == "" {
		return
	}
	l.Peers.Ban(id, time.Now().Add(l.BanFor), reason)
}

// peerBody tells the pipeline which peer served the bytes.
type peerBody struct {
	io.ReadCloser
	peer string
}

func (b *peerBody) Peer() string { return b.peer }

// serveBlobToPeer is the LAN peer protocol: GET/HEAD
// /_pkgswarm/v1/blob/sha256/<hex>. It serves verified blobs (Range
// supported) and, so that two nodes never both fetch one file from the
// origin, downloads of verified files still in flight (streamed as they
// arrive; aborted if they then fail verification). Anything else is 404.
func (s *Server) serveBlobToPeer(w http.ResponseWriter, r *http.Request) {
	d, err := store.ParseDigest(strings.ToLower(r.PathValue("hex")))
	if err != nil {
		http.Error(w, "pkgswarm: bad digest: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if s.IsVerified(d) {
		if f, _, err := s.store.OpenBlob(d); err == nil {
			defer f.Close()
			w.Header().Set("ETag", etag(d))
			w.Header().Set("X-Pkgswarm-State", stateComplete)
			rec, _ := w.(*recorder)
			http.ServeContent(w, r, "", time.Time{}, f)
			if rec != nil {
				s.metrics.peerBytes.Add(float64(rec.n))
			}
			return
		}
	}
	s.flights.mu.Lock()
	f := s.flights.m["sha256:"+d.String()]
	s.flights.mu.Unlock()
	if f == nil {
		http.Error(w, "pkgswarm: no verified blob sha256:"+d.String(), http.StatusNotFound)
		return
	}
	s.streamFlightToPeer(w, r, f)
}

func (s *Server) streamFlightToPeer(w http.ResponseWriter, r *http.Request, f *flight) {
	state := statePending
	if f.leading.Load() {
		state = stateStarting
	}
	select {
	case <-f.ready:
		state = stateFetching
	default:
	}
	select {
	case <-f.done:
		if f.err != nil {
			http.Error(w, "pkgswarm: download failed: "+f.err.Error(), http.StatusNotFound)
			return
		}
		state = stateFetching // committed: the follower reads the blob
	default:
	}
	w.Header().Set("X-Pkgswarm-State", state)
	size := f.size.Load()
	if r.Method == http.MethodHead {
		if size >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		return
	}
	select {
	case <-f.ready:
	case <-r.Context().Done():
		return
	}
	var offset int64
	if rg := r.Header.Get("Range"); rg != "" {
		n, ok := openRangeStart(rg)
		if !ok || size < 0 || n >= size {
			http.Error(w, "pkgswarm: only one open range (bytes=N-) is served from a download in flight", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		offset = n
	}
	fo := f.w.NewFollower(r.Context())
	defer fo.Close()
	if offset > 0 {
		if _, err := fo.Seek(offset, io.SeekStart); err != nil {
			http.Error(w, "pkgswarm: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size-offset, 10))
	}
	if offset > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, size-1, size))
		w.WriteHeader(http.StatusPartialContent)
	}
	n, err := io.Copy(w, fo)
	s.metrics.peerBytes.Add(float64(n))
	if err != nil && !errors.Is(err, context.Canceled) {
		panic(http.ErrAbortHandler)
	}
}

func openRangeStart(rg string) (int64, bool) {
	rest, ok := strings.CutPrefix(rg, "bytes=")
	if !ok || !strings.HasSuffix(rest, "-") || strings.Contains(rest, ",") {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(rest, "-"), 10, 64)
	return n, err == nil && n >= 0
}
