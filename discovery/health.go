package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// NodeInfo is what HealthPath answers.
type NodeInfo struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// healthLoop probes peers and expires them until ctx ends. Healthy peers are
// probed every ExpireAfter/2, unhealthy ones every BrowseInterval, new ones
// at once.
func (d *Discovery) healthLoop(ctx context.Context) {
	tick := min(max(d.cfg.BrowseInterval/4, 50*time.Millisecond), 500*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := time.Now()
		d.mu.Lock()
		d.recomputeLocked(now)
		type job struct {
			key, url, id string
		}
		var jobs []job
		for key, p := range d.peers {
			if p.self || p.probing || now.Before(p.nextProbe) {
				continue
			}
			p.probing = true
			expect := ""
			if p.Source == SourceMDNS {
				expect = p.ID
			}
			jobs = append(jobs, job{key, p.URL, expect})
		}
		d.mu.Unlock()
		d.flush()
		for _, j := range jobs {
			wg.Go(func() {
				info, err := d.probe(ctx, j.url, j.id)
				d.probed(j.key, j.url, info, err)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// probe asks base's HealthPath who it is. With expectID set, an answer with
// another id is an error (an address now used by another node).
func (d *Discovery) probe(ctx context.Context, base, expectID string) (NodeInfo, error) {
	var info NodeInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+HealthPath, nil)
	if err != nil {
		return info, fmt.Errorf("health check %s: %w", base+HealthPath, err)
	}
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return info, fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("health check %s: status %s", base+HealthPath, resp.Status)
	}
	return decodeNodeInfo(resp.Body, base+HealthPath, expectID)
}

// maxNodeInfo bounds a health answer (a node's id and version: some bytes).
const maxNodeInfo = 64 << 10

// decodeNodeInfo reads a health answer from u: JSON with a non-empty id
// (equal to expectID when that is set), at most maxNodeInfo bytes.
func decodeNodeInfo(r io.Reader, u, expectID string) (NodeInfo, error) {
	var info NodeInfo
	if err := json.NewDecoder(io.LimitReader(r, maxNodeInfo)).Decode(&info); err != nil {
		return NodeInfo{}, fmt.Errorf("health check %s: answer is not node JSON: %w", u, err)
	}
	if info.ID == "" {
		return NodeInfo{}, fmt.Errorf("health check %s: answer has no id", u)
	}
	if expectID != "" && info.ID != expectID {
		return NodeInfo{}, fmt.Errorf("health check %s: node id is %q, mDNS announced %q", u, info.ID, expectID)
	}
	return info, nil
}

// probed records the outcome of a probe of key at url.
func (d *Discovery) probed(key, url string, info NodeInfo, err error) {
	now := time.Now()
	d.mu.Lock()
	p, ok := d.peers[key]
	if !ok {
		d.mu.Unlock()
		return
	}
	p.probing = false
	if p.URL != url { // moved while we probed; the next tick probes the new URL
		d.mu.Unlock()
		return
	}
	d.snapshot = nil
	switch {
	case err == nil && info.ID == d.cfg.NodeID:
		p.self = true
		p.Healthy = false
		d.log.Info("static peer is this node; ignoring it", "url", url)
	case err == nil:
		if p.Source == SourceStatic {
			if p.ID != "" && p.ID != info.ID {
				// Another node now answers at this URL: to subscribers it
				// is one peer leaving and another joining.
				d.log.Info("static peer changed identity", "url", url, "from", p.ID, "to", info.ID)
				if p.member {
					p.member = false
					d.pending = append(d.pending, event{p: p.Peer, added: false})
				}
			}
			if p.FirstSeen.IsZero() || p.ID != info.ID {
				p.FirstSeen = now
			}
			p.ID = info.ID
			p.BannedUntil = d.bans[info.ID]
			p.LastSeen = now
		}
		if !p.Healthy {
			d.log.Debug("peer healthy", "peer", p.ID, "url", url, "version", info.Version)
		}
		p.Healthy = true
		p.Failures = 0
		p.nextProbe = now.Add(d.cfg.ExpireAfter / 2)
	default:
		p.Failures++
		if p.Healthy || p.Failures == 1 {
			d.log.Info("peer health check failed", "peer", p.ID, "url", url, "err", err)
		}
		p.Healthy = false
		p.nextProbe = now.Add(d.cfg.BrowseInterval)
	}
	d.recomputeLocked(now)
	d.mu.Unlock()
	d.flush()
}
