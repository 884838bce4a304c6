package main

import (
	"slices"
	"testing"
)

// Over as many rounds as there are targets, every target runs once at
// every place of a round: no target always comes first or last.
func TestRoundsRotateTheTargets(t *testing.T) {
	targets := []string{"direct", "pkgswarm", "apt-cacher-ng", "approx"}
	places := map[string][]int{}
	for round := range len(targets) {
		order := rotated(targets, round)
		if len(order) != len(targets) {
			t.Fatalf("round %d: %v", round, order)
		}
		for place, tg := range order {
			places[tg] = append(places[tg], place)
		}
	}
	for _, tg := range targets {
		got := slices.Sorted(slices.Values(places[tg]))
		if !slices.Equal(got, []int{0, 1, 2, 3}) {
			t.Errorf("%s ran at places %v over %d rounds, want each place once", tg, places[tg], len(targets))
		}
	}
	if got := rotated(targets, 0); !slices.Equal(got, targets) {
		t.Errorf("round 0: %v, want the targets' own order", got)
	}
	if len(rotated([]string(nil), 3)) != 0 {
		t.Error("no targets: a round of some")
	}
	if targets[0] != "direct" {
		t.Error("rotated changed its argument")
	}
}
