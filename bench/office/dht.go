package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pkgswarm/pkgswarm/internal/office"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// DHTWindow is what the pkgswarm nodes' DHT servers did in one window of
// a many-sites run, summed over the nodes (swarm.Stats counters).
type DHTWindow struct {
	Name       string  `json:"name"` // "download", "idle"
	Seconds    float64 `json:"s"`
	Nodes      int     `json:"nodes"`
	Seeded     int     `json:"seeded"` // blobs seeded, summed over the nodes at the end
	PacketsIn  int64   `json:"packets_in"`
	PacketsOut int64   `json:"packets_out"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	Announces  int64   `json:"announces"`
}

// PerNodeMinute returns packets (in+out) and bytes (in+out) per node per
// minute.
func (w DHTWindow) PerNodeMinute() (packets, bytes float64) {
	if w.Nodes == 0 || w.Seconds <= 0 {
		return 0, 0
	}
	k := 60 / w.Seconds / float64(w.Nodes)
	return float64(w.PacketsIn+w.PacketsOut) * k, float64(w.BytesIn+w.BytesOut) * k
}

// swarmSnapshot reads extra.swarm of every running node's status.
func swarmSnapshot(ctx context.Context, nodes []*office.Node) map[string]swarm.Stats {
	out := map[string]swarm.Stats{}
	for _, nd := range nodes {
		if !nd.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := nd.Get(sctx, "/_pkgswarm/status")
		cancel()
		if err != nil {
			continue
		}
		if st, ok := decodeSwarmStats(body); ok {
			out[nd.Name] = st
		}
	}
	return out
}

// dhtWindow sums the differences between two snapshots.
func dhtWindow(name string, d time.Duration, before, after map[string]swarm.Stats) DHTWindow {
	w := DHTWindow{Name: name, Seconds: round(d.Seconds())}
	for n, a := range after {
		b, ok := before[n]
		if !ok {
			continue
		}
		w.Nodes++
		w.Seeded += a.Seeded
		w.PacketsIn += a.DHTPacketsIn - b.DHTPacketsIn
		w.PacketsOut += a.DHTPacketsOut - b.DHTPacketsOut
		w.BytesIn += a.DHTBytesIn - b.DHTBytesIn
		w.BytesOut += a.DHTBytesOut - b.DHTBytesOut
		w.Announces += a.Announces - b.Announces
	}
	return w
}

// decodeSwarmStats reads the counters of extra.swarm from a node's status
// document, whose keys are snake_case (the status package writes every
// section so): swarm.Stats itself carries no JSON tags, and decoding into it
// matched "seeded" and "announces" but none of the dht_* keys.
func decodeSwarmStats(body []byte) (swarm.Stats, bool) {
	var doc struct {
		Extra struct {
			Swarm *struct {
				Seeded        int   `json:"seeded"`
				DHTPacketsIn  int64 `json:"dht_packets_in"`
				DHTPacketsOut int64 `json:"dht_packets_out"`
				DHTBytesIn    int64 `json:"dht_bytes_in"`
				DHTBytesOut   int64 `json:"dht_bytes_out"`
				Announces     int64 `json:"announces"`
				BytesUp       int64 `json:"bytes_up"`
				BytesDown     int64 `json:"bytes_down"`
			} `json:"swarm"`
		} `json:"extra"`
	}
	if json.Unmarshal(body, &doc) != nil || doc.Extra.Swarm == nil {
		return swarm.Stats{}, false
	}
	w := doc.Extra.Swarm
	return swarm.Stats{Seeded: w.Seeded, DHTPacketsIn: w.DHTPacketsIn, DHTPacketsOut: w.DHTPacketsOut,
		DHTBytesIn: w.DHTBytesIn, DHTBytesOut: w.DHTBytesOut, Announces: w.Announces,
		BytesUp: w.BytesUp, BytesDown: w.BytesDown}, true
}
