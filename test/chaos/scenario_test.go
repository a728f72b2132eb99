package main

import (
	"testing"
	"time"
)

// TestNotReadyBetween: a tier counts as not ready again only when two
// samples in a row say so; a single failed round (the checker's own stall)
// does not count, and samples outside the window are ignored.
func TestNotReadyBetween(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 250 * time.Millisecond) }
	smp := func(i int, ready map[string]bool) sample { return sample{at: at(i), ready: ready} }
	all := func(ok bool) map[string]bool { return map[string]bool{"message-1": ok, "push-1": ok} }
	cases := []struct {
		name    string
		samples []sample
		want    map[string]int
		first   int // index of the first counted sample (-1: none)
	}{
		{"always ready", []sample{smp(0, all(true)), smp(1, all(true))}, map[string]int{}, -1},
		{"one stalled round", []sample{smp(0, all(true)), smp(1, all(false)), smp(2, all(true))}, map[string]int{}, -1},
		{"two rounds in a row", []sample{smp(0, all(true)), smp(1, map[string]bool{"message-1": false, "push-1": true}),
			smp(2, map[string]bool{"message-1": false, "push-1": true}), smp(3, all(true))}, map[string]int{"message-1": 2}, 1},
		{"three rounds", []sample{smp(1, all(false)), smp(2, all(false)), smp(3, all(false))},
			map[string]int{"message-1": 3, "push-1": 3}, 1},
		{"before the window", []sample{smp(-2, all(false)), smp(-1, all(false)), smp(0, all(true))}, map[string]int{}, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &monitor{samples: tc.samples}
			got, first := m.notReadyBetween(at(0), at(100))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for n, c := range tc.want {
				if got[n] != c {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
			if tc.first < 0 && !first.IsZero() || tc.first >= 0 && !first.Equal(at(tc.first)) {
				t.Fatalf("first %v, want sample %d", first, tc.first)
			}
		})
	}
}
