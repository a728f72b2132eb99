package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/imcluster/imcluster/services/message/store"
)

// batchSizes records the size of every timeline write (one per batch).
type batchSizes struct {
	Store
	mu    sync.Mutex
	sizes []int
}

func (b *batchSizes) PersistStage(ctx context.Context, items []store.Item, stage store.Stage) error {
	if stage == store.StageTimeline {
		b.mu.Lock()
		b.sizes = append(b.sizes, len(items))
		b.mu.Unlock()
	}
	return b.Store.PersistStage(ctx, items, stage)
}

func (b *batchSizes) get() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...)
}

type fakeSession struct {
	sarama.ConsumerGroupSession // only Context, Claims, GenerationID and MarkOffset are used
	ctx                         context.Context
	marks                       chan int64 // if set, gets every marked offset
	partMarks                   chan mark  // if set, gets every mark with its partition
	claimed                     []int32    // the partitions Claims reports (runSession sets it)
}

type mark struct {
	part int32
	off  int64
}

func (s fakeSession) Context() context.Context   { return s.ctx }
func (s fakeSession) Claims() map[string][]int32 { return map[string][]int32{"log": s.claimed} }
func (s fakeSession) GenerationID() int32        { return 1 }

// MarkOffset reports the marked record's offset (the next offset to
// consume minus one).
func (s fakeSession) MarkOffset(_ string, part int32, next int64, _ string) {
	if s.marks != nil {
		s.marks <- next - 1
	}
	if s.partMarks != nil {
		s.partMarks <- mark{part, next - 1}
	}
}

type fakeClaim struct {
	sarama.ConsumerGroupClaim // only Messages, Partition, InitialOffset and HighWaterMarkOffset are used
	part                      int32
	msgs                      chan *sarama.ConsumerMessage
	hwm                       atomic.Int64
}

func (c *fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }
func (c *fakeClaim) Partition() int32                         { return c.part }
func (c *fakeClaim) InitialOffset() int64                     { return 0 }
func (c *fakeClaim) HighWaterMarkOffset() int64               { return c.hwm.Load() }

// runSession runs a consumer-group session over claims as sarama does:
// Setup, one ConsumeClaim per claim, and Cleanup once they have all
// returned (the session's context is done). done gets the first error, or
// Cleanup's result.
func runSession(h *handler, sess fakeSession, claims ...*fakeClaim) <-chan error {
	done := make(chan error, 1)
	for _, c := range claims {
		sess.claimed = append(sess.claimed, c.part)
	}
	if err := h.Setup(sess); err != nil {
		done <- err
		return done
	}
	var wg sync.WaitGroup
	for _, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = h.ConsumeClaim(sess, c)
		}()
	}
	go func() {
		wg.Wait()
		done <- h.Cleanup(sess)
	}()
	return done
}

// awaitSessionEnd waits (5 s at most) for runSession's result on done and
// fails the test if it does not come or is an error; when is said after
// "did not end".
func awaitSessionEnd(t *testing.T, done <-chan error, when string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end" + when)
	}
}

func testHandler(p *Processor, linger time.Duration) *handler {
	return &handler{c: &Consumer{Processor: p, BacklogLinger: linger, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		work: context.Background()}
}

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
			h := testHandler(p, time.Minute)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			claim := &fakeClaim{msgs: make(chan *sarama.ConsumerMessage, 4)}
			claim.hwm.Store(tc.hwm)
			done := runSession(h, fakeSession{ctx: ctx}, claim)
			claim.msgs <- msg(0)
			if tc.hwm == 1 {
				waitSizes(sizes, 1) // went alone, without waiting for record 1
			} else {
				time.Sleep(20 * time.Millisecond) // record 1 arrives late
			}
			claim.hwm.Store(2)
			claim.msgs <- msg(1)
			got := waitSizes(sizes, 2)
			cancel()
			awaitSessionEnd(t, done, "")
			if len(got) != len(tc.want) || got[0] != tc.want[0] {
				t.Fatalf("batches %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeliveryRunsAheadOfIndex: a partition's next batch is routed while
// the previous batch's index rows are still being written; batches are
// marked for commit only after their index rows, in order; batches queued
// meanwhile are indexed as one lot; and when indexing fails (the session
// ended) nothing from the failed lot on is marked.
func TestDeliveryRunsAheadOfIndex(t *testing.T) {
	msg := func(off int64) *sarama.ConsumerMessage {
		r := rec(t, off, message("alice", "bob", fmt.Sprint("c", off), fmt.Sprint("id", off), false))
		return &sarama.ConsumerMessage{Partition: 0, Offset: off, Key: r.Key, Value: r.Value}
	}
	p, fs, rt, _, _ := newProc()
	fs.indexGate, fs.indexFail, fs.indexEntered = make(chan struct{}), make(chan struct{}), make(chan struct{}, 4)
	var routed atomic.Int64
	routed.Store(-1)
	p.Router = routerFunc(func(ctx context.Context, b []Routed) error {
		routed.Store(b[len(b)-1].Event.Seq)
		return rt.Route(ctx, b)
	})
	h := testHandler(p, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sess := fakeSession{ctx: ctx, marks: make(chan int64, 16)}
	claim := &fakeClaim{msgs: make(chan *sarama.ConsumerMessage, 8)}
	done := runSession(h, sess, claim)
	waitRouted := func(off int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for routed.Load() < off {
			if time.Now().After(deadline) {
				t.Fatalf("offset %d not routed (last routed %d)", off, routed.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	noMark := func() {
		t.Helper()
		select {
		case m := <-sess.marks:
			t.Fatalf("offset %d marked before its index rows were written", m)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Batch 0 is routed; its index write (after IndexLinger) is held at
	// the gate.
	claim.hwm.Store(1)
	claim.msgs <- msg(0)
	waitRouted(0)
	<-fs.indexEntered
	// Batches 1 and 2 are routed while batch 0's index is still held.
	for off := int64(1); off <= 2; off++ {
		claim.hwm.Store(off + 1)
		claim.msgs <- msg(off)
		waitRouted(off)
	}
	noMark()
	fs.indexGate <- struct{}{} // batch 0's lot
	if m := <-sess.marks; m != 0 {
		t.Fatalf("marked %d first, want 0", m)
	}
	fs.indexGate <- struct{}{} // batches 1 and 2, queued meanwhile: one lot
	if m := <-sess.marks; m != 2 {
		t.Fatalf("marked %d, want 2 (batches 1 and 2 as one lot)", m)
	}
	fs.mu.Lock()
	lots := fmt.Sprint(fs.indexed)
	fs.mu.Unlock()
	if lots != "[[0] [1 2]]" {
		t.Fatalf("index writes %v, want [[0] [1 2]]", lots)
	}
	// The session ends while batch 3's index is held, then its write
	// fails: it is not marked, and the session ends.
	claim.hwm.Store(4)
	claim.msgs <- msg(3)
	waitRouted(3)
	<-fs.indexEntered
	cancel()
	close(fs.indexFail)
	awaitSessionEnd(t, done, " after its context was done")
	select {
	case m := <-sess.marks:
		t.Fatalf("offset %d marked although its index write failed", m)
	default:
	}
}

type routerFunc func(context.Context, []Routed) error

func (f routerFunc) Route(ctx context.Context, b []Routed) error { return f(ctx, b) }

// TestIndexLagBound: the next batch is not delivered while the oldest
// routed batch waiting for its index rows was routed IndexMaxLag ago or
// more, nor while IndexMaxRecords records wait; it is once they are
// indexed.
func TestIndexLagBound(t *testing.T) {
	tests := []struct {
		name    string
		pending []time.Duration // how long ago each pending batch was routed
		blocked bool
	}{
		{"none pending", nil, false},
		{"one fresh", []time.Duration{0}, false},
		{"oldest beyond the lag", []time.Duration{2 * IndexMaxLag, 0}, true},
		{"records full", make([]time.Duration, IndexMaxRecords), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := &indexer{progress: make(chan struct{})} // no run goroutine: the test finishes lots
			for _, ago := range tc.pending {
				x.pending = append(x.pending, &Delivered{routedAt: time.Now().Add(-ago)})
				x.records++
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if got := !x.wait(ctx); got != tc.blocked {
				t.Fatalf("blocked %v, want %v", got, tc.blocked)
			}
			if !tc.blocked {
				return
			}
			go x.finished(len(tc.pending), false)
			if !x.wait(context.Background()) {
				t.Fatal("still blocked after the pending batches were indexed")
			}
		})
	}
}

// TestLagGaugeFollowsClaim: a claim's batches set its partition's backlog
// gauge (the log end minus the last record delivered), and the series is
// gone once the session ends, so a partition that moved to another process
// does not keep its old lag here.
func TestLagGaugeFollowsClaim(t *testing.T) {
	p, fs, _, _, _ := newProc()
	sizes := &batchSizes{Store: fs}
	p.Store = sizes
	h := testHandler(p, time.Millisecond)
	claim := &fakeClaim{msgs: make(chan *sarama.ConsumerMessage, 1)}
	claim.hwm.Store(7) // 6 more records in the log than are handed over
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runSession(h, fakeSession{ctx: ctx}, claim)
	r := rec(t, 0, message("alice", "bob", "c", "lag-0", false))
	claim.msgs <- &sarama.ConsumerMessage{Partition: 0, Offset: 0, Key: r.Key, Value: r.Value}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(mLag.WithLabelValues("0")) != 6 {
		if time.Now().After(deadline) {
			t.Fatalf("lag gauge %v, want 6", testutil.ToFloat64(mLag.WithLabelValues("0")))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	awaitSessionEnd(t, done, "")
	if n := testutil.CollectAndCount(mLag); n != 0 {
		t.Fatalf("%d lag series after the claim ended, want 0", n)
	}
}

// TestBatchSpansPartitions: the records a fetch brings of every claimed
// partition form one batch (one timeline write); after its index rows,
// each partition's last record is marked and its persisted head recorded.
func TestBatchSpansPartitions(t *testing.T) {
	p, fs, _, _, _ := newProc()
	sizes := &batchSizes{Store: fs}
	p.Store = sizes
	h := testHandler(p, time.Minute) // a batch goes only once nothing is waiting
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sess := fakeSession{ctx: ctx, partMarks: make(chan mark, 8)}
	claims := []*fakeClaim{{part: 0}, {part: 1}}
	for _, c := range claims {
		c.msgs = make(chan *sarama.ConsumerMessage, 4)
		c.hwm.Store(2) // two records each in the log
	}
	done := runSession(h, sess, claims...)
	for off := range int64(2) {
		for _, c := range claims {
			r := rec(t, off, message(fmt.Sprint("u", c.part), "bob", fmt.Sprint("c", off), fmt.Sprintf("id-%d-%d", c.part, off), false))
			c.msgs <- &sarama.ConsumerMessage{Partition: c.part, Offset: off, Key: r.Key, Value: r.Value}
		}
	}
	got := map[int32]int64{}
	for len(got) < 2 {
		select {
		case m := <-sess.partMarks:
			got[m.part] = m.off
		case <-time.After(5 * time.Second):
			t.Fatalf("marks %v after 5 s, want both partitions' offset 1", got)
		}
	}
	cancel()
	awaitSessionEnd(t, done, "")
	if s := sizes.get(); len(s) != 1 || s[0] != 4 {
		t.Fatalf("timeline writes of %v records, want one of 4", s)
	}
	fs.mu.Lock()
	heads := fmt.Sprint(fs.heads)
	fs.mu.Unlock()
	if want := fmt.Sprint(map[int32]int64{0: 1, 1: 1}); fmt.Sprint(got) != want || heads != want {
		t.Fatalf("marked %v, heads %v; want %v for both", got, heads, want)
	}
}

// TestBatchWaitsForUnstartedClaimsBriefly: a batch waits (a linger) for a
// claimed partition whose ConsumeClaim has not started — its records may
// come — but only for claimStartWait after the session began: sarama never
// starts the claim of a partition whose consumer it could not create, and
// every batch of the session would linger for it.
func TestBatchWaitsForUnstartedClaimsBriefly(t *testing.T) {
	p, fs, _, _, _ := newProc()
	sizes := &batchSizes{Store: fs}
	p.Store = sizes
	h := testHandler(p, time.Minute) // a batch that lingered would miss the deadline below
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := &fakeClaim{part: 0, msgs: make(chan *sarama.ConsumerMessage, 1)}
	started.hwm.Store(1)                               // nothing more waiting on partition 0
	sess := fakeSession{ctx: ctx, claimed: []int32{1}} // partition 1 is claimed, never started
	done := runSession(h, sess, started)
	h.loop.mu.Lock()
	h.loop.started = time.Now().Add(-claimStartWait) // the session began claimStartWait ago
	h.loop.mu.Unlock()
	r := rec(t, 0, message("alice", "bob", "c", "unstarted-0", false))
	started.msgs <- &sarama.ConsumerMessage{Partition: 0, Offset: 0, Key: r.Key, Value: r.Value}
	deadline := time.Now().Add(5 * time.Second)
	for len(sizes.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no batch after 5 s: it still waits for the claim that never started")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	awaitSessionEnd(t, done, "")
}
