package pipeline

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// Delivered receipts are checked here, by the partition's single writer,
// not in the API: a receipt's record is in the log after every message its
// device could have received (a conversation's records share a partition,
// in order), so the writer decides it exactly, in log order, without a
// read in the common case.
//
// A receipt (a delivered record at offset off, acking ref) is kept when
// ref < off (a device cannot have received what was not yet sent) and the
// conversation holds a 1:1 message at ref (devices ack the seqs of
// messages they received; the push tier forwards each device's highest).
// Where that is looked up, cheapest first: earlier in the batch; the
// messages this process stored lately (recentMessages); the history (one
// point read). Each source is exact, so the decision is the same wherever
// and whenever the batch runs (a replay after a rebalance included).
//
// Every other receipt is dropped and counted (receipt_ignored): a buggy or
// forged ack must not produce a receipt, since peer_delivered_seq is a
// max-register and a false receipt would stay. Nothing is clamped.

// recentMessagesSize bounds the messages recentMessages remembers.
const recentMessagesSize = 1 << 16

// receiptLookups bounds the history reads of one batch in flight.
const receiptLookups = 16

// msgKey is one 1:1 message: its conversation and seq.
type msgKey struct {
	conv string
	seq  int64
}

// recentMessages remembers the 1:1 messages this process stored lately. An
// entry is a fact that never becomes false (a message was stored at that
// seq), so it outlives a partition's loss; a missing one only costs a read.
type recentMessages struct {
	mu   sync.Mutex
	set  map[msgKey]struct{}
	ring []msgKey
	next int
}

func (r *recentMessages) has(k msgKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[k]
	return ok
}

func (r *recentMessages) add(k msgKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set == nil {
		r.set = map[msgKey]struct{}{}
		r.ring = make([]msgKey, recentMessagesSize)
	}
	if _, ok := r.set[k]; ok {
		return
	}
	if evict := r.ring[r.next]; evict.conv != "" {
		delete(r.set, evict)
	}
	r.ring[r.next] = k
	r.set[k] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}

// remember records the 1:1 messages among stored items.
func (r *recentMessages) remember(items []store.Item) {
	for _, it := range items {
		if isDirectMessage(it) {
			r.add(msgKey{it.Rec.ConvID, it.Off})
		}
	}
}

func isDirectMessage(it store.Item) bool {
	return it.Rec.Kind == protocol.KindMessage && !it.Rejected && !it.Rec.IsGroup()
}

// checkReceipts drops the delivered receipts among items (one partition,
// offset order, de-duplicated) that acknowledge no message; see above.
func (p *Processor) checkReceipts(ctx, giveUp context.Context, items []store.Item) ([]store.Item, error) {
	inBatch := map[msgKey]struct{}{} // 1:1 messages earlier in the batch
	var unsure []int                 // receipts to look up in the history
	ok := make([]bool, len(items))
	for i, it := range items {
		k := msgKey{it.Rec.ConvID, it.Rec.RefSeq}
		_, earlier := inBatch[k]
		switch {
		case isDirectMessage(it):
			inBatch[msgKey{it.Rec.ConvID, it.Off}] = struct{}{}
			ok[i] = true
		case it.Rec.Kind != protocol.KindDelivered:
			ok[i] = true
		case it.Rec.RefSeq >= it.Off:
			// Acks what was not sent yet: never a message.
		case earlier || p.recent.has(k):
			ok[i] = true
		default:
			unsure = append(unsure, i)
		}
	}
	if len(unsure) > 0 {
		mReceiptLookups.Add(float64(len(unsure)))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(receiptLookups)
		for _, i := range unsure {
			it := items[i]
			g.Go(func() error {
				return p.retry(gctx, giveUp, "receipt_lookup", func() (err error) {
					ok[i], err = p.Store.TimelineHas(gctx, it.Rec.ConvID, it.Rec.RefSeq)
					return err
				})
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	kept := items[:0]
	for i, it := range items {
		if !ok[i] {
			mRecords.WithLabelValues("receipt_ignored").Inc()
			continue
		}
		kept = append(kept, it)
	}
	return kept, nil
}
