package client

import "testing"

func TestSeenSetDedupesAndStaysBounded(t *testing.T) {
	s := &seenSet{floor: -1, set: map[int64]struct{}{}}
	cases := []struct {
		seq  int64
		want bool
	}{{0, true}, {0, false}, {5, true}, {3, true}, {5, false}, {3, false}, {4, true}}
	for _, c := range cases {
		if got := s.add(c.seq); got != c.want {
			t.Fatalf("add(%d) = %v, want %v", c.seq, got, c.want)
		}
	}
	// Far more seqs than it keeps: memory stays bounded, recent ones are
	// still recognised, and out-of-window old ones count as seen.
	for q := int64(10); q < 10+3*seenKeep; q++ {
		if !s.add(q) {
			t.Fatalf("fresh seq %d refused", q)
		}
	}
	if len(s.set) > seenKeep {
		t.Fatalf("set holds %d > %d", len(s.set), seenKeep)
	}
	last := int64(10 + 3*seenKeep - 1)
	if s.add(last) || s.add(last-10) || s.add(5) {
		t.Fatal("a seen seq was accepted again")
	}
	if !s.add(last + 7) {
		t.Fatal("a new seq was refused")
	}
}
