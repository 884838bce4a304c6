package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/pkgswarm/pkgswarm/internal/node"
	"github.com/pkgswarm/pkgswarm/internal/rig"
	"github.com/pkgswarm/pkgswarm/swarm"
)

// The DHT counters are read from the status document as a node writes it
// (snake_case keys). Decoding into swarm.Stats matched "seeded" and
// "announces" only, so every many-sites run reported 0 DHT packets.
func TestSwarmStatsFromStatusDocument(t *testing.T) {
	want := swarm.Stats{Seeded: 2, DHTPacketsIn: 3, DHTPacketsOut: 4, DHTBytesIn: 174, DHTBytesOut: 237, Announces: 5, BytesUp: 6, BytesDown: 7}
	n := rig.Start(t, rig.Options{Quiet: true, Config: func(c *node.Config) {
		c.Extra = func() map[string]any { return map[string]any{"swarm": want} }
	}})
	resp, err := http.Get(n.URL + "/_pkgswarm/status")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeSwarmStats(body)
	if !ok {
		t.Fatalf("no swarm section in %s", body)
	}
	if got.Seeded != want.Seeded || got.DHTPacketsIn != want.DHTPacketsIn || got.DHTPacketsOut != want.DHTPacketsOut ||
		got.DHTBytesIn != want.DHTBytesIn || got.DHTBytesOut != want.DHTBytesOut || got.Announces != want.Announces ||
		got.BytesUp != want.BytesUp || got.BytesDown != want.BytesDown {
		t.Fatalf("decoded %+v from the status document, want %+v", got, want)
	}
}
