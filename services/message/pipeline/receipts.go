package pipeline

import (
	"context"
	"slices"

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
// de-duplication window (the messages this process stored lately on the
// partition, dedupe.go); the history (one point read). Each source is
// exact, so the decision is the same wherever and whenever the batch runs
// (a replay after a rebalance included).
//
// Every other receipt is dropped and counted (receipt_ignored): a buggy or
// forged ack must not produce a receipt, since peer_delivered_seq is a
// max-register and a false receipt would stay. Nothing is clamped.

// receiptLookups bounds the history reads of one batch in flight.
const receiptLookups = 16

func isDirectMessage(it store.Item) bool {
	return it.Rec.Kind == protocol.KindMessage && !it.Rejected && !it.Rec.IsGroup()
}

func isReceipt(it store.Item) bool { return it.Rec.Kind == protocol.KindDelivered }

// checkReceipts drops the delivered receipts among items (each
// partition's in offset order, de-duplicated) that acknowledge no message;
// see above. A conversation's records share a partition, so a receipt and
// its message are always of the same one.
func (p *Processor) checkReceipts(ctx, giveUp context.Context, items []store.Item) ([]store.Item, error) {
	if !slices.ContainsFunc(items, isReceipt) {
		return items, nil
	}
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
		case !isReceipt(it):
			ok[i] = true
		case it.Rec.RefSeq >= it.Off:
			// Acks what was not sent yet: never a message.
		case earlier || p.window.hasMessage(it.Part, k.conv, k.seq):
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
