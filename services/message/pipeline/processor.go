package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// Store is what the pipeline needs from Cassandra.
type Store interface {
	Persist(ctx context.Context, items []store.Item) error
	FindMessage(ctx context.Context, conv, msgID string, before, notBeforeMs int64) (int64, error)
	SetPartitionState(ctx context.Context, part int32, topicID string, maxOff int64) error
}

// DeadLetter takes records that can never be processed.
type DeadLetter interface {
	Produce(key string, value []byte, headers ...sarama.RecordHeader) (int32, int64, error)
}

// Record is one log record as the pipeline sees it.
type Record struct {
	Part  int32
	Off   int64
	Key   []byte
	Value []byte
}

// Processor turns a batch of one partition's records into their effect:
// decode → de-duplicate → persist → route. It is safe for concurrent use by
// different partitions.
type Processor struct {
	Store      Store
	Router     Router
	DeadLetter DeadLetter
	TopicID    string
	MaxBody    int
	Log        *slog.Logger
	// Permanent classifies persist errors (nil: store.IsPermanent).
	Permanent func(error) bool

	mu     sync.Mutex
	recent map[int32]*recentIDs
}

// Backoff bounds of the transient-error retries.
var (
	BackoffMin = 50 * time.Millisecond
	BackoffMax = 5 * time.Second
)

// errPermanent wraps an error retrying cannot fix.
type errPermanent struct{ error }

// retry runs f until it succeeds or ctx is done. Transient errors are
// never skipped; errors perm accepts (if perm is set) end it at once,
// wrapped in errPermanent.
func (p *Processor) retry(ctx context.Context, stage string, f func() error, perm ...func(error) bool) error {
	wait := BackoffMin
	for {
		err := f()
		if err == nil {
			return nil
		}
		if len(perm) > 0 && perm[0](err) {
			return errPermanent{err}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("while %s: %w (gave up: %w)", stage, err, ctx.Err())
		}
		mRetries.WithLabelValues(stage).Inc()
		p.Log.Warn("pipeline stage failed, retrying", "stage", stage, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("while %s: %w", stage, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, BackoffMax)
	}
}

// Process handles records (one partition, offset order). It returns nil once
// every record is persisted, routed, or dead-lettered — the caller may then
// commit — and an error only when ctx is done (nothing may be committed).
func (p *Processor) Process(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	start := time.Now()
	mBatchSize.Observe(float64(len(recs)))
	part := recs[0].Part
	items := make([]store.Item, 0, len(recs))
	inBatch := map[string]bool{}
	dups := 0
	for _, r := range recs {
		rec, err := model.Decode(r.Value, p.MaxBody)
		if err == nil && string(r.Key) != rec.ConvID {
			err = fmt.Errorf("record key %q is not its conversation %q", r.Key, rec.ConvID)
		}
		if err != nil {
			if err := p.deadLetter(ctx, r, err); err != nil {
				return err
			}
			continue
		}
		if rec.Kind == protocol.KindMessage {
			dup := inBatch[rec.MsgID]
			if !dup && rec.Retry {
				dup, err = p.isDuplicate(ctx, r, &rec)
				if err != nil {
					return err
				}
			}
			if dup {
				dups++
				continue
			}
			inBatch[rec.MsgID] = true
		}
		items = append(items, store.Item{Part: r.Part, Off: r.Off, Rec: rec})
	}
	mRecords.WithLabelValues("duplicate").Add(float64(dups))
	t := time.Now()
	items, err := p.persist(ctx, items, recs)
	if err != nil {
		return err
	}
	mBatchSeconds.WithLabelValues("persist").Observe(time.Since(t).Seconds())
	p.remember(part, items)
	// The partition's persisted head is recorded beside the routing, not
	// before it: the batch is persisted either way, and the delivery need
	// not wait a Cassandra round trip for bookkeeping (the start-up guard
	// and the unread pull's sync cursor read it). Both end before commit.
	last := recs[len(recs)-1].Off
	stateDone := make(chan error, 1)
	go func() {
		stateDone <- p.retry(ctx, "partition_state", func() error { return p.Store.SetPartitionState(ctx, part, p.TopicID, last) })
	}()
	t = time.Now()
	if err := p.route(ctx, items); err != nil {
		return errors.Join(err, <-stateDone)
	}
	if err := <-stateDone; err != nil {
		return err
	}
	mBatchSeconds.WithLabelValues("route").Observe(time.Since(t).Seconds())
	mBatchSeconds.WithLabelValues("total").Observe(time.Since(start).Seconds())
	mRecords.WithLabelValues("persisted").Add(float64(len(items)))
	return nil
}

// route hands items to the router (nothing to do for none).
func (p *Processor) route(ctx context.Context, items []store.Item) error {
	if len(items) == 0 {
		return nil
	}
	routed := make([]Routed, len(items))
	for i, it := range items {
		routed[i] = Routed{Event: it.Rec.Event(it.Off), Users: []string{it.Rec.From, it.Rec.To()}, ExceptDevice: it.Rec.DeviceID}
	}
	if err := p.Router.Route(ctx, routed); err != nil {
		return fmt.Errorf("while routing: %w", err)
	}
	return nil
}

// persist writes items; if the batch fails permanently, it writes them one
// by one, in order, and dead-letters the records that fail permanently on
// their own. It returns the items persisted.
func (p *Processor) persist(ctx context.Context, items []store.Item, recs []Record) ([]store.Item, error) {
	perm := p.Permanent
	if perm == nil {
		perm = store.IsPermanent
	}
	err := p.retry(ctx, "persist", func() error { return p.Store.Persist(ctx, items) }, perm)
	var pe errPermanent
	if !errors.As(err, &pe) {
		return items, err
	}
	p.Log.Warn("batch failed permanently, persisting its records one by one", "err", err)
	byOff := map[int64]Record{}
	for _, r := range recs {
		byOff[r.Off] = r
	}
	kept := items[:0:0]
	for _, it := range items {
		err := p.retry(ctx, "persist", func() error { return p.Store.Persist(ctx, []store.Item{it}) }, perm)
		if errors.As(err, &pe) {
			if err := p.deadLetter(ctx, byOff[it.Off], pe.error); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		kept = append(kept, it)
	}
	return kept, nil
}

// isDuplicate decides whether a Retry message record was already persisted
// at another offset: the in-memory recent set first, then a search of the
// conversation's messages back to the original attempt's time window (only
// for retried records; see model.MaxProduceDelay).
func (p *Processor) isDuplicate(ctx context.Context, r Record, rec *model.Record) (bool, error) {
	if p.seen(r.Part, rec.MsgID, r.Off) {
		return true, nil
	}
	var seq int64
	err := p.retry(ctx, "dedupe", func() error {
		var err error
		notBefore := rec.AtMs - (model.MaxProduceDelay + model.MaxClockSkew).Milliseconds()
		seq, err = p.Store.FindMessage(ctx, rec.ConvID, rec.MsgID, r.Off, notBefore)
		return err
	})
	if err != nil {
		return false, err
	}
	return seq >= 0 && seq != r.Off, nil
}

func (p *Processor) deadLetter(ctx context.Context, r Record, why error) error {
	p.Log.Warn("dead-lettering record", "partition", r.Part, "offset", r.Off, "reason", why)
	headers := []sarama.RecordHeader{
		{Key: []byte("reason"), Value: []byte(why.Error())},
		{Key: []byte("partition"), Value: []byte(fmt.Sprint(r.Part))},
		{Key: []byte("offset"), Value: []byte(fmt.Sprint(r.Off))},
	}
	err := p.retry(ctx, "dead_letter", func() error {
		_, _, err := p.DeadLetter.Produce(string(r.Key), r.Value, headers...)
		return err
	})
	if err == nil {
		mRecords.WithLabelValues("dead_letter").Inc()
	}
	return err
}

// recentIDs remembers the msg_ids persisted lately on one partition, so a
// retried record right behind its original needs no Cassandra read.
type recentIDs struct {
	ids  map[string]int64
	ring []string
	next int
}

const recentPerPartition = 4096

func (p *Processor) seen(part int32, msgID string, off int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.recent[part]
	if r == nil {
		return false
	}
	o, ok := r.ids[msgID]
	return ok && o != off
}

func (p *Processor) remember(part int32, items []store.Item) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recent == nil {
		p.recent = map[int32]*recentIDs{}
	}
	r := p.recent[part]
	if r == nil {
		r = &recentIDs{ids: map[string]int64{}, ring: make([]string, recentPerPartition)}
		p.recent[part] = r
	}
	for _, it := range items {
		if it.Rec.Kind != protocol.KindMessage {
			continue
		}
		if old := r.ring[r.next]; old != "" {
			delete(r.ids, old)
		}
		r.ring[r.next] = it.Rec.MsgID
		r.ids[it.Rec.MsgID] = it.Off
		r.next = (r.next + 1) % len(r.ring)
	}
}
