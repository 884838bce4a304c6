package lan

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkgswarm/pkgswarm/proxy/fetch"
)

// Peer is another pkgswarm node on the LAN.
type Peer struct {
	ID  string // node id
	URL string // base URL, "http://ip:port"
}

// PeerSet is the live set of LAN peers (discovery, through an adapter in
// cmd). Peers is called once per lookup round and must be cheap.
type PeerSet interface {
	Peers() []Peer
	// Ban keeps a peer out of Peers until the given time.
	Ban(id string, until time.Time, reason string)
}

// FilePeerSet is implemented by peer sets that depend on the file: the
// swarm tier's peers are the nodes the DHT names for it. When Peers
// implements it, PeersFor is called instead of Peers, once per lookup round
// (every 100 ms while a node waits, every second while it reads), so it
// must answer from what it knows and look further in the background.
type FilePeerSet interface {
	PeersFor(ctx context.Context, what string) []Peer
}

// Peer protocol states, in the X-Pkgswarm-State header of a HEAD on
// /_pkgswarm/v1/blob/sha256/<hex> (the server side is in package proxy).
const (
	stateComplete = "complete"
	stateFetching = "fetching"
	stateStarting = "starting"
	statePending  = "pending"
)

// Source is the LAN tier.
type Source struct {
	Peers  PeerSet
	NodeID string // this node's id: ranks it against peers fetching at once
	// SelfID, when set, gives the node's id at each fetch instead of NodeID
	// (the swarm tier's id is the address other sites see the node at,
	// learned after start).
	SelfID func() string
	// Client talks to peers. Nil means a client with short timeouts that
	// ignores proxy environment variables.
	Client *http.Client
	// Budget bounds one round of HEAD probes. Zero means 500ms.
	Budget time.Duration
	// Wait bounds how long a node waits for a peer that is about to fetch
	// the same file. Zero means 15s.
	Wait time.Duration
	// BanFor is how long a misbehaving peer is banned. Zero means 10
	// minutes.
	BanFor time.Duration
	// MultiMinSize is the size from which a file is read from several
	// peers at once, by ranges (see multi.go). Zero means 4 MiB; negative
	// means never.
	MultiMinSize int64
	// ChunkSize is the size of one range request of a multi-source read.
	// Zero means 1 MiB, and 8 MiB across sites (Wide).
	ChunkSize int64
	// Window is how many chunks a multi-source read keeps in flight. Zero
	// means 4, and 2 across sites (Wide).
	Window int
	// PerPeer is how many range requests a multi-source read runs at one
	// peer at once, each on a TCP connection of its own. Zero means 2, and
	// 1 across sites (Wide): there the peer is behind another site's
	// uplink, and parallel flows through one uplink, each with its own
	// congestion control, overfill its queue (in the many-sites benchmark
	// they lost 4–7 % of what they sent, and the chain of sites ran at
	// 17.5 of the uplinks' 20 Mbit/s; docs/benchmarks-fleet.md). One flow
	// and long chunks keep the queue short; a chunk's request then waits
	// for the one before it, a round trip per chunk.
	PerPeer int
	// ChunkStall gives up one range request that delivers nothing for this
	// long (another peer is asked). Zero means 4s.
	ChunkStall time.Duration
	// Label is the tier's name (Name); "" means "lan". The swarm tier runs
	// the same protocol with peers beyond the site.
	Label string
	// Wide is set for peers beyond the site (the swarm tier): there every
	// peer is its site's leader, past its own LAN round, so a peer in its
	// wide stage is a contender ranked like a pending one, not one to
	// wait for.
	Wide bool
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Logger receives debug lines about failed range requests. Nil means
	// slog.Default().
	Logger *slog.Logger

	once   sync.Once
	mu     sync.Mutex           // protects banned, multis
	banned map[string]time.Time // peer host (address) → end of ban
	multis map[string]*multi    // multi-source bodies by token, for Penalize
	order  []string             // tokens in multis, oldest first
	seq    int
}

var (
	_ fetch.Source    = (*Source)(nil)
	_ fetch.Penalizer = (*Source)(nil)
)

func (l *Source) init() {
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
		if l.Now == nil {
			l.Now = time.Now
		}
		if l.MultiMinSize == 0 {
			l.MultiMinSize = defaultMultiMinSize
		}
		chunk, window, perPeer := int64(defaultChunkSize), defaultWindow, defaultPerPeer
		if l.Wide {
			chunk, window, perPeer = defaultWideChunkSize, defaultWideWindow, defaultWidePerPeer
		}
		if l.ChunkSize <= 0 {
			l.ChunkSize = chunk
		}
		if l.Window <= 0 {
			l.Window = window
		}
		if l.PerPeer <= 0 {
			l.PerPeer = perPeer
		}
		if l.ChunkStall <= 0 {
			l.ChunkStall = defaultChunkStall
		}
		if l.Logger == nil {
			l.Logger = slog.Default()
		}
		l.banned = map[string]time.Time{}
		l.multis = map[string]*multi{}
	})
}

// self is the node's id (NodeID or SelfID).
func (l *Source) self() string {
	if l.SelfID != nil {
		return l.SelfID()
	}
	return l.NodeID
}

// Name implements fetch.Source.
func (l *Source) Name() string {
	if l.Label != "" {
		return l.Label
	}
	return "lan"
}

func (l *Source) logDebug(msg string, args ...any) { l.Logger.Debug(msg, args...) }

type probeResult struct {
	peer     Peer
	answered bool // the peer answered (any status); false: an error or no answer
	state    string
	have     int64  // X-Pkgswarm-Have (a complete blob: its size)
	source   string // X-Pkgswarm-Source
	stage    string // X-Pkgswarm-Stage
	uploads  int64  // X-Pkgswarm-Uploads
}

// Fetch implements fetch.Source. One node of the site fetches a file the
// others miss at the same moment; the rest stream from it. A peer whose
// download is past its LAN round ("starting") is waited for whatever its
// id. Among peers still in their LAN round ("pending"), the one ranked first
// by rendezvous hashing of (node id, file) goes on, independent of who asked
// first; the others wait for it. A peer that said it was fetching the file
// for the site ("starting") and still serves nothing after Wait is banned:
// it promised and did not deliver.
func (l *Source) Fetch(ctx context.Context, a *fetch.Attempt) (*fetch.Body, error) {
	l.init()
	what, err := lookupPath(a.Request)
	if err != nil {
		return nil, err
	}
	deadline := l.Now().Add(l.Wait)
	confirmed := false
	// A round in which most peers did not answer within the budget says
	// nothing of who holds the file: busy machines (this one's or theirs)
	// answer late, and taking the silence for "nobody" fetched a second
	// copy for the site from the origin (20 nodes on two cores). So the
	// round keeps listening to its HEADs for twice the budget more; asking
	// them again would only add to the load that made them late. (Not
	// across sites: there a silent peer is a far one, and the origin's copy
	// is not the site's second.)
	var patience time.Duration
	if !l.Wide {
		patience = 2 * l.Budget
	}
	starting := map[string]Peer{} // peers that said they fetch it for the site (across sites: outrank this node), by id
	for {
		peers := l.live(ctx, what)
		if len(peers) == 0 {
			return nil, fmt.Errorf("lan: no peers: %w", fetch.ErrNotFound)
		}
		roundStart := l.Now()
		results, answered := l.probe(ctx, peers, what, l.Budget, patience)
		var complete, fetching []Peer
		waitFor, contended := false, false
		starts, pending, behind := 0, 0, 0
		myRank := rendezvous(l.self(), what)
		kept := results[:0]
		for _, r := range results {
			if l.relaysBehind(r, a.Offset) {
				behind++ // see relaysBehind; a multi-source read leaves it out too
				continue
			}
			kept = append(kept, r)
			state := r.state
			if l.Wide && state == stateStarting && r.stage == "wide" {
				state = statePending
			}
			switch state {
			case stateComplete:
				complete = append(complete, r.peer)
			case stateFetching:
				fetching = append(fetching, r.peer)
			case stateStarting:
				starts++
				waitFor = true
				starting[r.peer.ID] = r.peer
			case statePending:
				pending++
				if rendezvous(r.peer.ID, what) > myRank {
					waitFor = true
					if l.Wide {
						// Past its LAN round within a second when honest.
						starting[r.peer.ID] = r.peer
					}
				} else {
					contended = true
				}
			}
		}
		results = kept
		l.logDebug("lan round", "what", what, "peers", len(peers), "answered", answered, "complete", len(complete),
			"fetching", len(fetching), "behind", behind, "starting", starts, "pending", pending, "took", l.Now().Sub(roundStart).Round(time.Millisecond))
		if size := a.Request.Expect.Size; l.MultiMinSize > 0 && size >= l.MultiMinSize && len(complete)+len(fetching) > 0 {
			return l.multiBody(ctx, what, size, a.Offset, results), nil
		}
		// Spread the load: any holder will do, not always the fastest to
		// answer (which would serve the whole site).
		rand.Shuffle(len(complete), func(i, j int) { complete[i], complete[j] = complete[j], complete[i] })
		rand.Shuffle(len(fetching), func(i, j int) { fetching[i], fetching[j] = fetching[j], fetching[i] })
		for i, p := range append(complete, fetching...) {
			body, err := l.get(ctx, p, what, a.Offset)
			if err == nil {
				return body, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if i >= len(complete) && errors.Is(err, errGone) {
				// Its download failed since it said it was running (its
				// origin answered 404, say): the truth, not a lie.
				l.logDebug("lan peer's download ended without the file", "peer", p.URL, "what", what, "err", err)
				continue
			}
			// It said it had the file, then did not serve it.
			l.ban(p, fmt.Errorf("lan peer %s announced %s and then failed to serve it: %w", p.URL, what, err))
		}
		if !waitFor && contended && !confirmed {
			// This node outranks every peer it saw in its LAN round, but a
			// peer that probed before this node's download existed saw no
			// contender and may be on its way to the origin already: look
			// once more before going too.
			confirmed = true
			waitFor = true
		} else if !waitFor && behind > 0 {
			return nil, fmt.Errorf("lan: no peer of %d holds or brings %s past the %d bytes this node holds (%d peers only relay bytes it holds): %w",
				len(peers), what, a.Offset, behind, fetch.ErrNotFound)
		} else if !waitFor {
			return nil, fmt.Errorf("lan: no peer of %d holds %s: %w", len(peers), what, fetch.ErrNotFound)
		} else if l.Now().After(deadline) {
			for _, p := range starting {
				l.ban(p, fmt.Errorf("lan peer %s said it was about to fetch %s and sent nothing in %v", p.URL, what, l.Wait))
			}
			return nil, fmt.Errorf("lan: the peers about to fetch %s did not in %v: %w", what, l.Wait, fetch.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// relaysBehind reports whether the peer of probe result r is behind this
// node's download resumed at offset: it relays (its download reads from
// peers of this tier) and serves no byte past the bytes this node holds. Its
// bytes come from a peer this node sees too, or from this node itself, so it
// is not read from: the node that brought a file's bytes from the origin,
// back in its LAN round after the origin stalled (an uplink cut), found the
// two peers that had been reading from it, each waiting for bytes only it
// could bring, and read from them until its stall timeout cut them twice; by
// then they had gone to the origin themselves, and the origin sent the rest
// of the file twice more (the office benchmark's churn run: 1.76 origin
// copies). A peer that brings new bytes (from a tier after this one) or holds
// more is kept, and so is one whose answer did not say where its bytes come
// from. A download not resumed (offset 0) leaves out no one.
func (l *Source) relaysBehind(r probeResult, offset int64) bool {
	return offset > 0 && r.state == stateFetching && r.source == l.Name() && r.have-heldBack <= offset
}

// lookupPath is the peer protocol path a request is asked by.
func lookupPath(req *fetch.Request) (string, error) {
	switch {
	case req.Expect == nil:
		return "", fmt.Errorf("lan: %s is not vouched for by a verified chain: %w", req.URL, fetch.ErrNotFound)
	case req.Expect.SHA256 != nil:
		return "/_pkgswarm/v1/blob/sha256/" + req.Expect.Hex(), nil
	case req.Expect.Key != "" && req.Expect.Size >= 0 && !strings.ContainsAny(req.Expect.Key, "/:|"):
		// Known by name and size only (urpmi): the pipeline runs the rpm
		// signature and payload check on whatever a peer sends.
		return "/_pkgswarm/v1/rpm/" + req.Expect.Key, nil
	}
	return "", fmt.Errorf("lan: %s has no lookup key: %w", req.URL, fetch.ErrNotFound)
}

// live is the peer set for what, without peers banned here by address.
func (l *Source) live(ctx context.Context, what string) []Peer {
	var peers []Peer
	if fp, ok := l.Peers.(FilePeerSet); ok {
		peers = fp.PeersFor(ctx, what)
	} else {
		peers = l.Peers.Peers()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	out := peers[:0:0]
	for _, p := range peers {
		if until, ok := l.banned[hostOf(p.URL)]; ok && now.Before(until) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func hostOf(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	return pu.Hostname()
}

// rendezvous ranks a node for a file (highest random weight hashing): every
// node computes the same ranking, and different files get different
// leaders.
func rendezvous(nodeID, what string) uint64 {
	h := sha256.Sum256([]byte(nodeID + "\x00" + what))
	return binary.BigEndian.Uint64(h[:8])
}

// probe sends HEAD to every peer at once and returns the answers that came
// within the budget, and how many peers answered; it returns early once a
// peer holds the whole file. When most peers have not answered when the
// budget ends, it listens to the same requests for up to patience more.
func (l *Source) probe(ctx context.Context, peers []Peer, what string, budget, patience time.Duration) (out []probeResult, answered int) {
	ctx, cancel := context.WithTimeout(ctx, budget+patience)
	defer cancel()
	first := time.NewTimer(budget)
	defer first.Stop()
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
				// An error before the budget ran out (a refused connection)
				// is the peer's answer; one at its end is silence.
				ch <- probeResult{peer: p, answered: ctx.Err() == nil}
				return
			}
			resp.Body.Close()
			r := probeResult{peer: p, answered: true}
			if resp.StatusCode == http.StatusOK {
				h := resp.Header
				r.state = h.Get("X-Pkgswarm-State")
				if r.state == "" {
					r.state = stateComplete
				}
				r.source, r.stage = h.Get("X-Pkgswarm-Source"), h.Get("X-Pkgswarm-Stage")
				r.have, _ = strconv.ParseInt(h.Get("X-Pkgswarm-Have"), 10, 64)
				if r.state == stateComplete {
					r.have = resp.ContentLength
				}
				r.uploads, _ = strconv.ParseInt(h.Get("X-Pkgswarm-Uploads"), 10, 64)
			}
			ch <- r
		}()
	}
	var settle <-chan time.Time
	for len(out) < len(peers) {
		select {
		case r := <-ch:
			out = append(out, r)
			if r.answered {
				answered++
			}
			if r.state == stateComplete && settle == nil {
				// A holder answered: give the others a moment, so the
				// choice among holders is not always the fastest one.
				settle = time.After(probeSettle)
			}
		case <-settle:
			return out, answered
		case <-first.C:
			if patience <= 0 || answered*2 >= len(peers) {
				return out, answered
			}
			l.logDebug("lan round mostly unanswered: listening longer", "what", what, "peers", len(peers), "answered", answered, "for", patience)
		case <-ctx.Done():
			return out, answered
		}
	}
	return out, answered
}

// probeSettle is how long probe keeps listening after the first holder.
const probeSettle = 20 * time.Millisecond

func peerURL(p Peer, what string) string {
	return strings.TrimRight(p.URL, "/") + what
}

func (l *Source) get(ctx context.Context, p Peer, what string, offset int64) (*fetch.Body, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peerURL(p, what), nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := l.Client.Do(req)
	if err != nil {
		return nil, err
	}
	who := p.ID + "@" + p.URL
	switch resp.StatusCode {
	case http.StatusOK:
		return &fetch.Body{ReadCloser: resp.Body, Size: resp.ContentLength, Peer: who}, nil
	case http.StatusPartialContent:
		cr, err := fetch.ParseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cr.First > offset {
			resp.Body.Close()
			return nil, fmt.Errorf("lan peer %s: unusable Content-Range %q for offset %d (%v)", p.URL, resp.Header.Get("Content-Range"), offset, err)
		}
		return &fetch.Body{ReadCloser: resp.Body, Start: cr.First, Size: cr.Total, Peer: who}, nil
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("lan peer %s: %s: %w", p.URL, resp.Status, errGone)
	}
	return nil, fmt.Errorf("lan peer %s: %s", p.URL, resp.Status)
}

// multiBody starts a multi-source read and registers it for Penalize.
func (l *Source) multiBody(ctx context.Context, what string, size, offset int64, results []probeResult) *fetch.Body {
	m := l.newMulti(ctx, what, size, offset, results)
	l.mu.Lock()
	l.seq++
	m.token = multiToken + strconv.Itoa(l.seq)
	l.multis[m.token] = m
	l.order = append(l.order, m.token)
	if len(l.order) > 256 {
		delete(l.multis, l.order[0])
		l.order = l.order[1:]
	}
	l.mu.Unlock()
	return &fetch.Body{ReadCloser: m, Start: offset, Size: size, Peer: m.token}
}

// Penalize implements fetch.Penalizer: the peer that sent bad bytes, or
// stalled, is banned by id and by address. For a multi-source read, a file
// that failed verification is blamed on every peer that contributed (bytes
// carry no proof of their sender below the whole-file digest); a cut for
// stalling only on the complete holders that contributed, since the others
// were waiting for bytes their own sources had not brought yet.
func (l *Source) Penalize(a *fetch.Attempt, who string, reason error) {
	l.init()
	if isMultiToken(who) {
		l.mu.Lock()
		m := l.multis[who]
		l.mu.Unlock()
		if m == nil {
			return
		}
		used, complete := m.contributors()
		if errors.Is(reason, fetch.ErrStalled) || errors.Is(reason, fetch.ErrTooSlow) {
			used = complete
		}
		for _, p := range used {
			l.ban(p, reason)
		}
		return
	}
	id, u, _ := strings.Cut(who, "@")
	if id == "" {
		return
	}
	l.ban(Peer{ID: id, URL: u}, reason)
}

func (l *Source) ban(p Peer, reason error) {
	until := l.Now().Add(l.BanFor)
	if h := hostOf(p.URL); h != "" {
		l.mu.Lock()
		l.banned[h] = until
		l.mu.Unlock()
	}
	l.Peers.Ban(p.ID, until, reason.Error())
}
