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
//
//  1. ref < off: a device cannot have received what was not yet sent, and
//  2. the conversation has a message at or after ref, before off: known
//     when the last 1:1 message this process stored in the conversation
//     (earlier in the batch, or remembered in lastMessages) lies in
//     [ref, off); otherwise the history is asked whether it holds a
//     message at ref (one point read; devices ack message seqs).
//
// Every other receipt is dropped and counted (receipt_ignored): a buggy or
// forged ack must not produce a receipt, since peer_delivered_seq is a
// max-register and a false receipt would stay. Nothing is clamped.

// lastMessagesSize bounds the conversations lastMessages remembers.
const lastMessagesSize = 1 << 16

// receiptLookups bounds the history reads of one batch in flight.
const receiptLookups = 16

// lastMessages remembers, per conversation, the highest seq of a 1:1
// message this process stored. An entry is a fact that never becomes false
// (a message was stored at that seq), so it outlives a partition's loss;
// an entry that is missing or behind only costs a read.
type lastMessages struct {
	mu   sync.Mutex
	seq  map[string]int64
	ring []string
	next int
}

func (l *lastMessages) get(conv string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seq[conv]
	return s, ok
}

func (l *lastMessages) put(conv string, seq int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seq == nil {
		l.seq = map[string]int64{}
		l.ring = make([]string, lastMessagesSize)
	}
	if old, ok := l.seq[conv]; ok {
		l.seq[conv] = max(old, seq)
		return
	}
	if evict := l.ring[l.next]; evict != "" {
		delete(l.seq, evict)
	}
	l.ring[l.next] = conv
	l.seq[conv] = seq
	l.next = (l.next + 1) % len(l.ring)
}

// remember records the 1:1 messages among stored items.
func (l *lastMessages) remember(items []store.Item) {
	for _, it := range items {
		if isDirectMessage(it) {
			l.put(it.Rec.ConvID, it.Off)
		}
	}
}

func isDirectMessage(it store.Item) bool {
	return it.Rec.Kind == protocol.KindMessage && !it.Rejected && !it.Rec.IsGroup()
}

// checkReceipts drops the delivered receipts among items (one partition,
// offset order, de-duplicated) that acknowledge no message; see above.
func (p *Processor) checkReceipts(ctx, giveUp context.Context, items []store.Item) ([]store.Item, error) {
	inBatch := map[string]int64{} // conversation → last 1:1 message earlier in the batch
	var unsure []int              // receipts to look up in the history
	ok := make([]bool, len(items))
	for i, it := range items {
		switch {
		case isDirectMessage(it):
			inBatch[it.Rec.ConvID] = it.Off
			ok[i] = true
		case it.Rec.Kind != protocol.KindDelivered:
			ok[i] = true
		case it.Rec.RefSeq >= it.Off:
			// Acks what was not sent yet: never a message.
		case inRange(p.knownUpTo(inBatch, it.Rec.ConvID), it.Rec.RefSeq, it.Off):
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
		for _, i := range unsure {
			if ok[i] { // a fact from the history: spares the next reads
				p.lastMsgs.put(items[i].Rec.ConvID, items[i].Rec.RefSeq)
			}
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

// inRange: a message at seq last proves a receipt at off acking ref when it
// lies in [ref, off). A remembered message after off (the batch is a
// replay) proves nothing about the log before off.
func inRange(last, ref, off int64) bool { return last >= ref && last < off }

// knownUpTo is the last 1:1 message of conv this process knows of: earlier
// in the batch, else remembered; -1 when neither.
func (p *Processor) knownUpTo(inBatch map[string]int64, conv string) int64 {
	if s, ok := inBatch[conv]; ok {
		return s
	}
	if s, ok := p.lastMsgs.get(conv); ok {
		return s
	}
	return -1
}
