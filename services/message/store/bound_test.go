package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
)

// Bucket-marker writes wait for the per-process write bound like every
// other write of Persist: with every slot taken, Persist writes no marker
// and gives up when its context ends.
func TestMarkersWaitForTheWriteBound(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	const part = 1
	tests := []struct {
		name     string
		from, to string
		stage    string // which marker Persist reaches first
	}{
		{"conv_buckets", "alice", "bob", "conv"},
		// With the conversation's marker already written Persist goes
		// straight to the feeds, whose markers come first.
		{"feed_buckets", "carol", "dave", "feed"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			off := int64(100 + i)
			conv := model.ConvID(tc.from, tc.to)
			if tc.stage == "feed" {
				store.RememberConvBucket(st, conv, model.Bucket(off))
			}
			release := store.HoldAllWrites(st)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := st.Persist(ctx, []store.Item{{Part: part, Off: off, Rec: msg(conv, tc.from, "hi", 1000+off)}})
			cancel()
			release()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Persist with every write slot taken: %v, want the context's deadline", err)
			}
			check := context.Background()
			switch tc.stage {
			case "conv":
				if b, err := store.StoredConvBuckets(check, st, conv); err != nil || len(b) != 0 {
					t.Fatalf("conv_buckets of %s: %v (err %v); want none written past the bound", conv, b, err)
				}
			case "feed":
				for _, u := range []string{tc.from, tc.to} {
					if b, err := store.StoredFeedBuckets(check, st, u, part); err != nil || len(b) != 0 {
						t.Fatalf("feed_buckets of %s: %v (err %v); want none written past the bound", u, b, err)
					}
				}
			}
		})
	}
}
