package mlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// LogEnds waits out a moving leader (or a restarted broker's dropped
// connections) within its context, however many reads that takes, and
// returns other errors at once.
func TestLogEndsRetriesWithinContext(t *testing.T) {
	notLeader := fmt.Errorf("while listing the log end of t/0: %w", sarama.ErrNotLeaderForPartition)
	dropped := fmt.Errorf("while listing the log ends of t at broker 1: %w", io.EOF)
	incomplete := fmt.Errorf("while listing the log end of t/0: %w", sarama.ErrIncompleteResponse)
	for _, tc := range []struct {
		name     string
		failFor  time.Duration // reads fail with err until then
		err      error
		ctx      time.Duration
		wantErr  error // nil: the ends
		maxReads int64 // 0: any
	}{
		// 3 tries within ~150 ms used to give up here.
		{name: "leader moves for 600ms", failFor: 600 * time.Millisecond, err: notLeader, ctx: 10 * time.Second},
		{name: "broker restarted", failFor: 300 * time.Millisecond, err: dropped, ctx: 10 * time.Second},
		{name: "leader never back", failFor: time.Hour, err: notLeader, ctx: 700 * time.Millisecond, wantErr: context.DeadlineExceeded},
		{name: "permanent error", failFor: time.Hour, err: incomplete, ctx: 10 * time.Second, wantErr: sarama.ErrIncompleteResponse, maxReads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reads atomic.Int64
			start := time.Now()
			p := &Producer{topic: "t", readEnds: func() ([]int64, error) {
				reads.Add(1)
				if time.Since(start) < tc.failFor {
					return nil, tc.err
				}
				return []int64{7, 9}, nil
			}}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			ends, err := p.LogEnds(ctx)
			took := time.Since(start)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("LogEnds after %s and %d reads: %v", took, reads.Load(), err)
			case tc.wantErr == nil && fmt.Sprint(ends) != "[7 9]":
				t.Fatalf("LogEnds: %v, want [7 9]", ends)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("LogEnds: %v (ends %v), want an error wrapping %v", err, ends, tc.wantErr)
			}
			if tc.maxReads > 0 && reads.Load() > tc.maxReads {
				t.Errorf("%d reads, want at most %d (the error is not transient)", reads.Load(), tc.maxReads)
			}
			if errors.Is(tc.wantErr, context.DeadlineExceeded) && !errors.Is(err, sarama.ErrNotLeaderForPartition) {
				t.Errorf("LogEnds past its deadline: %v, want the last read's error too", err)
			}
			// Bounded: by the context, plus one read and a backoff at most.
			if limit := tc.ctx + logEndBackoffMax + time.Second; took > limit {
				t.Errorf("LogEnds took %s, more than %s", took, limit)
			}
		})
	}
}
