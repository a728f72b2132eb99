package pipeline

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// De-duplication by msg_id, in log order, by the partition's single
// writer. Every attempt of one send carries the same msg_id
// (model.MessageID), and a conversation's records all land on one
// partition, in order. So the first copy of a msg_id in log order is the
// message; every later copy is dropped (same content) or rejected
// (different content: the sender reused a client_msg_id).
//
// Where an earlier copy is looked up, cheapest first:
//
//  1. earlier in the same batch;
//  2. the window: the msg_ids this process stored lately on the partition
//     (windowPerPartition of them), which covers a retry right behind its
//     original — the common duplicate;
//  3. the msg_ids table (one plain point read per msg_id not found above,
//     the batch's reads concurrent): durable across restarts, rebalances
//     and days.
//
// The msg_ids row is written with the message row, USING TIMESTAMP
// 2^62 - seq (store), so the lowest seq wins whatever the order of writes.
// A zombie writer (a consumer that lost the partition but still writes)
// makes the same decisions for the same records as the new owner — both
// see the same earlier copies, in the same order — and writes rows keyed by
// offset, so it cannot make a second stored copy.
//
// Known gap: a client that reuses one client_msg_id for two different
// recipients at the same instant sends records to two partitions; each
// writer may miss the other's row, and both messages are stored (with the
// same msg_id, in two conversations). A sequential reuse is rejected.

// windowPerPartition bounds the window of one partition.
const windowPerPartition = 4096

// verdict is the pipeline's decision on one message record.
type verdict int

const (
	keep      verdict = iota // the first copy in log order: store it
	duplicate                // a later copy of the same content: drop it
	reject                   // a later copy with other content: tell the sender
)

// judge decides one message record at off given an earlier copy, if any.
func judge(prior store.StoredID, known bool, off int64, hash []byte) verdict {
	switch {
	case !known || prior.Seq >= off: // none, or this very record (a replay)
		return keep
	case prior.SameContent(hash):
		return duplicate
	}
	return reject
}

// window remembers the msg_ids stored lately, per partition. An entry is
// a fact that never becomes false (the lowest seq of a msg_id stays
// stored), so a window survives losing and regaining its partition; only
// what it lacks is looked up.
type window struct {
	mu    sync.Mutex
	parts map[int32]*partWindow
}

type partWindow struct {
	ids  map[string]store.StoredID
	msgs map[msgKey]struct{} // the same messages by (conversation, seq): receipts.go
	ring []string
	next int
}

// msgKey is one stored message: its conversation and seq.
type msgKey struct {
	conv string
	seq  int64
}

func (w *window) get(part int32, id string) (store.StoredID, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pw := w.parts[part]
	if pw == nil {
		return store.StoredID{}, false
	}
	s, ok := pw.ids[id]
	return s, ok
}

// hasMessage reports whether the window holds a message of conv at seq.
func (w *window) hasMessage(part int32, conv string, seq int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	pw := w.parts[part]
	if pw == nil {
		return false
	}
	_, ok := pw.msgs[msgKey{conv, seq}]
	return ok
}

// remember adds the messages among items (stored) to their partitions'
// windows.
func (w *window) remember(items []store.Item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parts == nil {
		w.parts = map[int32]*partWindow{}
	}
	for _, it := range items {
		if it.Rec.Kind != protocol.KindMessage || it.Rejected {
			continue
		}
		pw := w.parts[it.Part]
		if pw == nil {
			pw = &partWindow{ids: map[string]store.StoredID{}, msgs: map[msgKey]struct{}{}, ring: make([]string, windowPerPartition)}
			w.parts[it.Part] = pw
		}
		if _, ok := pw.ids[it.Rec.MsgID]; ok {
			continue // a replay of a remembered record
		}
		if old := pw.ring[pw.next]; old != "" {
			gone := pw.ids[old]
			delete(pw.msgs, msgKey{gone.ConvID, gone.Seq})
			delete(pw.ids, old)
		}
		pw.ring[pw.next] = it.Rec.MsgID
		pw.ids[it.Rec.MsgID] = store.StoredID{ConvID: it.Rec.ConvID, Seq: it.Off, Hash: it.Hash, AtMs: it.Rec.AtMs}
		pw.msgs[msgKey{it.Rec.ConvID, it.Off}] = struct{}{}
		pw.next = (pw.next + 1) % len(pw.ring)
	}
}

// partMsgID is a msg_id on one partition: each partition's records are
// decided on their own, as its single writer would.
type partMsgID struct {
	part int32
	id   string
}

// dedupe turns decoded items (of one or more partitions, each partition's
// in offset order) into the items to persist: duplicates dropped,
// conflicting reuses marked Rejected.
func (p *Processor) dedupe(ctx, giveUp context.Context, items []store.Item) ([]store.Item, error) {
	// earlier holds what the window or the store knows of each msg_id,
	// read once per batch.
	earlier := map[partMsgID]store.StoredID{}
	asked := map[partMsgID]bool{}
	missed := map[string][]int32{} // the partitions whose window lacked each msg_id
	for i := range items {
		it := &items[i]
		k := partMsgID{it.Part, it.Rec.MsgID}
		if it.Rec.Kind != protocol.KindMessage || asked[k] {
			continue
		}
		asked[k] = true
		if s, ok := p.window.get(k.part, k.id); ok {
			earlier[k] = s
		} else {
			missed[k.id] = append(missed[k.id], k.part)
		}
	}
	misses := slices.Collect(maps.Keys(missed))
	for i := range items {
		if items[i].Rec.Kind == protocol.KindMessage {
			items[i].Hash = model.ContentHash(items[i].Rec.HashTarget(), items[i].Rec.Type, items[i].Rec.Body)
		}
	}
	if len(misses) > 0 {
		mLookups.Add(float64(len(misses)))
		var stored map[string]store.StoredID
		err := p.retry(ctx, giveUp, "dedupe", func() (err error) {
			stored, err = p.Store.LookupMessageIDs(ctx, misses)
			return err
		})
		if err != nil {
			return nil, err
		}
		for id, s := range stored {
			for _, part := range missed[id] {
				earlier[partMsgID{part, id}] = s
			}
		}
	}
	inBatch := map[partMsgID]store.StoredID{}
	kept := items[:0]
	for _, it := range items {
		if it.Rec.Kind != protocol.KindMessage {
			kept = append(kept, it)
			continue
		}
		id := partMsgID{it.Part, it.Rec.MsgID}
		prior, known := inBatch[id]
		if !known {
			prior, known = earlier[id]
		}
		switch judge(prior, known, it.Off, it.Hash) {
		case duplicate:
			mRecords.WithLabelValues("duplicate").Inc()
			continue
		case reject:
			mRecords.WithLabelValues("rejected").Inc()
			p.Log.Warn("client_msg_id reused for other content; rejected", "conv", it.Rec.ConvID, "from", it.Rec.From,
				"client_msg_id", it.Rec.ClientMsgID, "offset", it.Off, "stored_seq", prior.Seq)
			it.Rejected = true
			if prior.ConvID == it.Rec.ConvID {
				it.StoredSeq = prior.Seq
			}
		default:
			inBatch[id] = store.StoredID{ConvID: it.Rec.ConvID, Seq: it.Off, Hash: it.Hash, AtMs: it.Rec.AtMs}
		}
		kept = append(kept, it)
	}
	return kept, nil
}
