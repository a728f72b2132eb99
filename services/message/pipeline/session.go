package pipeline

import (
	"cmp"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// sessionLoop is the pipeline of one consumer-group session: the records
// of every claimed partition are merged into batches, delivered one batch
// after the other and indexed by one indexer.
//
// Why one loop for all partitions: a batch's fixed costs — the
// de-duplication read, the timeline write, one delivery per push node, its
// share of an index lot — do not grow with its records. sarama fetches all
// of a broker's partitions in one request, so a fetch holds a little of
// each; batched per partition, a process consuming six partitions paid
// those costs six times per fetch. Merged, it pays them once. Each
// partition's records stay in offset order within and across batches, and
// every decision (de-duplication, receipts, groups) is still made per
// partition (Processor); only the requests are shared. The price: the
// partitions of a process now wait for each other — a batch that retries
// (a store that fails) holds them all, where it held only its own
// partition before; but they all write to the same store, which a
// transient failure hits for all of them alike, and a record that fails
// permanently is still written alone or dead-lettered (Processor.persist).
//
// The claims' goroutines (ConsumeClaim) forward their records to in; the
// loop owns everything else. It ends when the session's context is done:
// the batch in progress finishes (within the consumer's grace), the queued
// lots are indexed, and what was forwarded but not delivered is left
// uncommitted, to replay wherever its partition goes.
type sessionLoop struct {
	h    *handler
	sess sarama.ConsumerGroupSession
	in   chan *sarama.ConsumerMessage
	done chan struct{} // closed when run returns

	claimed int // the session's partitions

	mu      sync.Mutex
	claims  map[int32]sarama.ConsumerGroupClaim // those whose ConsumeClaim started
	started time.Time                           // when the session began
}

// claimStartWait bounds how long a batch waits for claims that have not
// started (see waiting).
const claimStartWait = time.Second

func (h *handler) startLoop(sess sarama.ConsumerGroupSession) *sessionLoop {
	l := &sessionLoop{h: h, sess: sess, in: make(chan *sarama.ConsumerMessage, MaxBatch), done: make(chan struct{}),
		claims: map[int32]sarama.ConsumerGroupClaim{}, started: time.Now()}
	for _, parts := range sess.Claims() {
		l.claimed += len(parts)
	}
	go l.run()
	return l
}

// wait returns once the loop has ended (the session's context is done).
func (l *sessionLoop) wait() { <-l.done }

// forward hands claim's records to the loop until the claim or the session
// ends.
func (l *sessionLoop) forward(claim sarama.ConsumerGroupClaim) {
	l.mu.Lock()
	l.claims[claim.Partition()] = claim
	l.mu.Unlock()
	ctx := l.sess.Context()
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return
			}
			select {
			case l.in <- m:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (l *sessionLoop) run() {
	defer close(l.done)
	ix := newIndexer(l.h.c.Processor, l.sess, l.h.c.Kafka.Topic, l.h.work)
	defer ix.stop()
	// The backlog gauges are this session's: a partition that moved to
	// another process must not keep showing, here, the lag it had.
	defer l.forgetLag()
	linger := cmp.Or(l.h.c.BacklogLinger, DefaultBacklogLinger)
	timer := time.NewTimer(linger) // re-armed per wait
	timer.Stop()
	taken := map[int32]int64{} // the last offset batched, per partition
	batch := make([]Record, 0, MaxBatch)
	for {
		batch = batch[:0]
		add := func(m *sarama.ConsumerMessage) {
			batch, taken[m.Partition] = append(batch, record(m)), m.Offset
		}
		select {
		case m := <-l.in:
			add(m)
		case <-l.sess.Context().Done():
			return
		}
	drain:
		for len(batch) < MaxBatch {
			// An empty channel is momentary: sarama feeds each claim from a
			// fetch a record at a time, and the claims forward them one by
			// one. While a claimed partition's high-water mark says records
			// are waiting, wait a moment for them: a fetch's records of all
			// partitions form one batch, and under a backlog the batch grows
			// (up to MaxBatch). With nothing waiting the batch goes at once.
			var timeout <-chan time.Time // nil: a record is ready
			if len(l.in) == 0 {
				if !l.waiting(taken) {
					break drain
				}
				timer.Reset(linger)
				timeout = timer.C
			}
			select {
			case m := <-l.in:
				timer.Stop()
				add(m)
			case <-timeout:
				break drain
			}
		}
		// The session's end (a rebalance, or shutdown) stops retries, so a
		// batch stuck on a failing store hands its partitions back instead
		// of holding the whole group's rebalance into the session timeout.
		if !ix.wait(l.sess.Context()) {
			return
		}
		d, err := l.h.c.Processor.Deliver(l.h.work, l.sess.Context(), batch)
		if err != nil {
			// The session ended (or the grace ran out) before the batch
			// could finish: hand it back uncommitted; it replays wherever
			// its partitions go.
			l.h.c.Log.Warn("batch handed back uncommitted", "records", len(batch), "from", batch[0].Off, "err", err)
			return
		}
		ix.add(d)
		l.setLag(d.Last)
	}
}

// waiting reports whether a claimed partition's log holds records beyond
// the last one batched (taken; a partition not batched yet: from the
// claim's initial offset), or may: its ConsumeClaim has not started yet
// (for at most claimStartWait: sarama never starts the claim of a
// partition whose consumer it could not create).
func (l *sessionLoop) waiting(taken map[int32]int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.claims) < l.claimed && time.Since(l.started) < claimStartWait {
		return true
	}
	for part, c := range l.claims {
		last, ok := taken[part]
		if !ok {
			last = c.InitialOffset() - 1
		}
		if c.HighWaterMarkOffset() > last+1 {
			return true
		}
	}
	return false
}

// setLag sets the backlog gauge of each partition of a delivered batch:
// the log's end minus its last record delivered.
func (l *sessionLoop) setLag(last map[int32]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for part, off := range last {
		if c := l.claims[part]; c != nil {
			mLag.WithLabelValues(strconv.Itoa(int(part))).Set(float64(max(0, c.HighWaterMarkOffset()-off-1)))
		}
	}
}

func (l *sessionLoop) forgetLag() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for part := range l.claims {
		mLag.DeleteLabelValues(strconv.Itoa(int(part)))
	}
}
