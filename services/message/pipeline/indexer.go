package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// Bounds of the index's lag behind routing, per consumer session.
const (
	// IndexMaxRecords bounds the routed records waiting for their index
	// rows (memory, and the size of one lot).
	IndexMaxRecords = 4 * MaxBatch
	// IndexLinger is how long a lot waits for more batches after its
	// first was routed: a member's rows are one mutation per lot however
	// many of the group's messages it holds, so under load this divides
	// the per-member writes (a group of 100 at 10 msg/s writes each
	// member's rows 4 times a second instead of 10). Pushes never wait
	// for it; the feed, unread pull and list see a batch this much later.
	IndexLinger = 250 * time.Millisecond
	// IndexLateAfter: a lot written longer than this after its first
	// batch was routed (a backlog after an outage: a lot of thousands of
	// records) may have missed the second login sync of a device that
	// logged in meanwhile, resync_after_ms (2 s) after its welcome; the
	// Router, if it is a LateHinter, tells such devices to sync.
	IndexLateAfter = 1500 * time.Millisecond
	// IndexMaxLag bounds how long ago the oldest of them may have been
	// routed before the next batch is delivered. A device that registers
	// while an event is routed syncs again resync_after_ms (2 s by
	// default) after its welcome (docs/protocol.md §5, step 3); the index
	// rows of what was routed before it registered must be written by
	// then, so resync_after_ms must stay above this plus one index write.
	IndexMaxLag = time.Second
)

// indexer writes the index rows of a session's delivered batches, in
// order, on its own goroutine, and marks each batch's records for commit
// after them.
// Batches routed while it writes or lingers go in one Index call (a lot),
// so a member's feed entries of several batches share one request.
//
// It is what lets the pushes run ahead of the per-member writes:
// Deliver of batch k+1 (timeline rows, routing) overlaps Index of batch k.
// The order the feed contract needs is kept, since lots are written one
// after the other, in offset order. The lag is bounded by IndexMaxRecords
// and IndexMaxLag (wait).
type indexer struct {
	proc  *Processor
	sess  sarama.ConsumerGroupSession
	topic string // of the records it marks
	work  context.Context
	wake  chan struct{} // cap 1: pending grew, or closed was set
	done  chan struct{} // closed when run returns

	mu       sync.Mutex
	pending  []*Delivered  // routed, not yet indexed; the lot in flight first
	records  int           // the pending batches' records
	progress chan struct{} // closed (and replaced) whenever pending shrinks
	closed   bool          // no more adds
	failed   bool          // a lot could not be indexed: nothing more is
}

func newIndexer(proc *Processor, sess sarama.ConsumerGroupSession, topic string, work context.Context) *indexer {
	x := &indexer{proc: proc, sess: sess, topic: topic, work: work, wake: make(chan struct{}, 1), done: make(chan struct{}),
		progress: make(chan struct{})}
	go x.run()
	return x
}

// wait blocks until the next batch may be delivered: fewer than
// IndexMaxRecords records pending and the oldest routed less than
// IndexMaxLag ago. It
// returns false when indexing failed (the session ended; nothing from the
// failed lot on is committed) or ctx is done.
func (x *indexer) wait(ctx context.Context) bool {
	for {
		x.mu.Lock()
		failed := x.failed
		ok := len(x.pending) == 0 || (x.records < IndexMaxRecords && time.Since(x.pending[0].routedAt) < IndexMaxLag)
		ch := x.progress
		x.mu.Unlock()
		if failed {
			return false
		}
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// add queues a delivered batch for indexing. Only the session's loop
// calls add and stop.
func (x *indexer) add(d *Delivered) {
	x.mu.Lock()
	x.pending = append(x.pending, d)
	x.records += d.records()
	x.mu.Unlock()
	x.signal()
}

// stop waits until every queued batch is indexed (or indexing failed).
func (x *indexer) stop() {
	x.mu.Lock()
	x.closed = true
	x.mu.Unlock()
	x.signal()
	<-x.done
}

func (x *indexer) signal() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// next returns the lot to index (everything pending), waiting for one and
// then lingering (IndexLinger) unless half the record bound is pending or
// the session is ending; nil once closed and drained.
func (x *indexer) next() []*Delivered {
	for {
		x.mu.Lock()
		n, closed := len(x.pending), x.closed
		var linger time.Duration
		if n > 0 && x.records < IndexMaxRecords/2 {
			linger = IndexLinger - time.Since(x.pending[0].routedAt)
		}
		if closed || (n > 0 && linger <= 0) {
			lot := append([]*Delivered(nil), x.pending...)
			x.mu.Unlock()
			return lot
		}
		x.mu.Unlock()
		if n == 0 {
			<-x.wake
			continue
		}
		t := time.NewTimer(linger)
		select {
		case <-t.C:
		case <-x.wake:
			t.Stop()
		}
	}
}

// finished removes the lot's n batches from pending (or everything, on
// failure) and wakes wait.
func (x *indexer) finished(n int, failed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if failed {
		x.failed, x.pending, x.records = true, nil, 0
	} else {
		for _, d := range x.pending[:n] {
			x.records -= d.records()
		}
		x.pending = x.pending[n:]
	}
	close(x.progress)
	x.progress = make(chan struct{})
}

func (x *indexer) run() {
	defer close(x.done)
	for {
		lot := x.next()
		if len(lot) == 0 {
			return
		}
		if err := x.proc.Index(x.work, x.sess.Context(), lot); err != nil {
			x.proc.Log.Warn("batches handed back uncommitted", "batches", len(lot), "err", err)
			x.finished(len(lot), true)
			return
		}
		x.finished(len(lot), false)
		for part, off := range lastOffsets(lot) {
			x.sess.MarkOffset(x.topic, part, off+1, "") // the next offset to consume
		}
	}
}
