package pipeline

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/message/store"
)

// batchSizes records the size of every Persist call.
type batchSizes struct {
	Store
	mu    sync.Mutex
	sizes []int
}

func (b *batchSizes) Persist(ctx context.Context, items []store.Item) error {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(items))
	b.mu.Unlock()
	return b.Store.Persist(ctx, items)
}

func (b *batchSizes) get() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...)
}

type fakeSession struct {
	sarama.ConsumerGroupSession // only Context and MarkMessage are used
	ctx                         context.Context
}

func (s fakeSession) Context() context.Context                    { return s.ctx }
func (s fakeSession) MarkMessage(*sarama.ConsumerMessage, string) {}

type fakeClaim struct {
	sarama.ConsumerGroupClaim // only Messages, Partition and HighWaterMarkOffset are used
	msgs                      chan *sarama.ConsumerMessage
	hwm                       atomic.Int64
}

func (c *fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }
func (c *fakeClaim) Partition() int32                         { return 0 }
func (c *fakeClaim) HighWaterMarkOffset() int64               { return c.hwm.Load() }

// TestBatchWaitsOnlyForABacklog: a batch waits for records the log says are
// waiting (so batches grow under a backlog), and goes at once otherwise.
func TestBatchWaitsOnlyForABacklog(t *testing.T) {
	msg := func(off int64) *sarama.ConsumerMessage {
		r := rec(t, off, message("alice", "bob", "c", "id"+string(rune('a'+off)), false))
		return &sarama.ConsumerMessage{Partition: 0, Offset: off, Key: r.Key, Value: r.Value}
	}
	waitSizes := func(b *batchSizes, n int) []int {
		deadline := time.Now().Add(2 * time.Second) // far below the linger below
		for {
			s := b.get()
			total := 0
			for _, x := range s {
				total += x
			}
			if total >= n {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("persisted batches %v, want %d records", s, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	tests := []struct {
		name string
		hwm  int64 // the log end the claim reports while record 0 is handed over
		want []int
	}{
		{"backlog: one batch", 2, []int{2}},
		{"no backlog: at once", 1, []int{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, fs, _, _, _ := newProc()
			sizes := &batchSizes{Store: fs}
			p.Store = sizes
			// A linger far longer than the test's deadlines: a batch that
			// lingered without a backlog would miss them.
			h := &handler{c: &Consumer{Processor: p, BacklogLinger: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
				work: context.Background()}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			claim := &fakeClaim{msgs: make(chan *sarama.ConsumerMessage, 4)}
			claim.hwm.Store(tc.hwm)
			done := make(chan error, 1)
			go func() { done <- h.ConsumeClaim(fakeSession{ctx: ctx}, claim) }()
			claim.msgs <- msg(0)
			if tc.hwm == 1 {
				waitSizes(sizes, 1) // went alone, without waiting for record 1
			} else {
				time.Sleep(20 * time.Millisecond) // record 1 arrives late
			}
			claim.hwm.Store(2)
			claim.msgs <- msg(1)
			got := waitSizes(sizes, 2)
			close(claim.msgs)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ConsumeClaim did not return")
			}
			if len(got) != len(tc.want) || got[0] != tc.want[0] {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
		})
	}
}
