package client

import (
	"context"
	"testing"
	"time"
)

func TestRefreshDelay(t *testing.T) {
	c := &Client{cfg: Config{TokenSource: func(context.Context) (string, error) { return "", nil }}}
	in := func(d time.Duration) int64 { return time.Now().Add(d).UnixMilli() }
	cases := []struct {
		left     time.Duration
		min, max time.Duration
	}{
		{time.Hour, 47 * time.Minute, 48 * time.Minute},                           // four fifths
		{2 * time.Minute, 89 * time.Second, 90 * time.Second},                     // 30 s before expiry
		{3 * time.Second, time.Second, time.Second},                               // floor
		{2 * time.Second, 900 * time.Millisecond, time.Second},                    // floor, or halfway to expiry
		{1200 * time.Millisecond, 500 * time.Millisecond, 600 * time.Millisecond}, // halfway: the floor would be too late
		{15 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},     // at least 10 ms
		{-time.Second, time.Second, time.Second},                                  // already expired: floor
	}
	for _, tc := range cases {
		if d := c.refreshDelay(in(tc.left)); d < tc.min || d > tc.max {
			t.Errorf("token expiring in %v: refresh in %v, want [%v, %v]", tc.left, d, tc.min, tc.max)
		}
	}
	if d := (&Client{}).refreshDelay(in(time.Hour)); d >= 0 {
		t.Errorf("without a token source: refresh in %v, want never", d)
	}
}
