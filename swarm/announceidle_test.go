package swarm

import (
	"slices"
	"testing"
	"time"
)

// docs/scale.md, the hot set: of the seeded blobs due for their re-announce,
// one nobody read within AnnounceIdle is left out (its DHT entries expire),
// one read lately is not; a first announce and a retry always go out; a
// negative AnnounceIdle re-announces every blob.
func TestIdleBlobsAreNotReannounced(t *testing.T) {
	now := time.Now()
	lastUsed := map[string]time.Time{"used": now.Add(-time.Minute), "idle": now.Add(-7 * 24 * time.Hour)}
	for _, tc := range []struct {
		name string
		idle time.Duration
		want []string
	}{
		{"idle for an hour", time.Hour, []string{"used", "new", "retry"}},
		{"the default, a week", 0, []string{"used", "new", "retry"}},
		{"every blob", -1, []string{"used", "idle", "new", "retry"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lastUsed["idle"] = now.Add(-DefaultAnnounceIdle - time.Hour)
			n := newNode(t, newDirBlobs(t), func(c *Config) {
				c.LastUsed = func(h string) time.Time { return lastUsed[h] }
				c.AnnounceIdle = tc.idle
			})
			due := []*seedEntry{
				{hex: "used", announced: true},
				{hex: "idle", announced: true},
				{hex: "new"},                     // never announced
				{hex: "retry", announced: false}, // the last announce reached no DHT node
			}
			lastUsed["new"], lastUsed["retry"] = time.Time{}, time.Time{}
			skipped := n.idleSkipped.Load()
			var got []string
			routine := map[*seedEntry]bool{}
			for _, e := range due {
				routine[e] = e.announced
			}
			for _, e := range n.dropIdle(due, routine, now) {
				got = append(got, e.hex)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("announced %v, want %v", got, tc.want)
			}
			if d := n.idleSkipped.Load() - skipped; d != int64(4-len(tc.want)) {
				t.Errorf("%d re-announces counted as left out, want %d", d, 4-len(tc.want))
			}
		})
	}
}
