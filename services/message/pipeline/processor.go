package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// Store is what the pipeline needs from Cassandra. Every method may be
// called concurrently (for different partitions) and must be idempotent:
// the pipeline retries failures and replays batches.
type Store interface {
	// PersistStage writes stage's part of the effect of items (of one or
	// more partitions, each partition's in offset order;
	// store.StageTimeline before routing, store.StageIndex after it, a
	// partition's index writes one after the other).
	PersistStage(ctx context.Context, items []store.Item, stage store.Stage) error
	// LookupMessageIDs returns where each of ids is stored, if it is.
	LookupMessageIDs(ctx context.Context, ids []string) (map[string]store.StoredID, error)
	// LoadGroup reads a group's row and member rows.
	LoadGroup(ctx context.Context, group string) (*store.GroupState, error)
	// SetPartitionState records the partition's highest persisted offset.
	SetPartitionState(ctx context.Context, part int32, topicID string, maxOff int64) error
	// TimelineHas reports whether conv's history holds a row at seq (the
	// check of a delivered receipt the pipeline cannot decide from memory).
	TimelineHas(ctx context.Context, conv string, seq int64) (bool, error)
}

// DeadLetter takes records that can never be processed; it returns once
// the record is durable (acks=all).
type DeadLetter interface {
	Produce(key string, value []byte, headers ...mlog.Header) (int32, int64, error)
}

// Record is one log record as the pipeline sees it.
type Record struct {
	Part  int32
	Off   int64
	Key   []byte
	Value []byte
}

// Processor turns a batch of records into their effect: decode →
// de-duplicate → check receipts → decide group records → persist → route.
// A batch may hold the records of several partitions (each partition's in
// offset order); every decision is made per partition, as its single
// writer would, and the batch's fixed costs (the de-duplication read, the
// timeline write, one delivery per push node) are shared. It is safe for
// concurrent use by batches of different partitions.
type Processor struct {
	Store      Store
	Router     Router
	DeadLetter DeadLetter
	TopicID    string
	Log        *slog.Logger
	// Permanent classifies persist errors (nil: store.IsPermanent).
	Permanent func(error) bool
	// MaxGroupSize bounds a group's members (0: config.DefaultGroupMaxMembers).
	MaxGroupSize int

	window window
	groups groupCache
}

// Backoff bounds of the transient-error retries.
var (
	BackoffMin = 50 * time.Millisecond
	BackoffMax = 5 * time.Second
)

// errPermanent wraps an error retrying cannot fix.
type errPermanent struct{ error }

// retry runs f until it succeeds, ctx is done, or giveUp is done (the
// partition was revoked: a batch must not retry into the next owner's
// session). Transient errors are never skipped; errors perm accepts (if
// perm is set) end it at once, wrapped in errPermanent.
func (p *Processor) retry(ctx, giveUp context.Context, stage string, f func() error, perm ...func(error) bool) error {
	wait := BackoffMin
	for {
		err := f()
		if err == nil {
			return nil
		}
		if len(perm) > 0 && perm[0](err) {
			return errPermanent{err}
		}
		if ctx.Err() != nil || giveUp.Err() != nil {
			return fmt.Errorf("while %s: %w (gave up: %w)", stage, err, cmp.Or(ctx.Err(), giveUp.Err()))
		}
		mRetries.WithLabelValues(stage).Inc()
		p.Log.Warn("pipeline stage failed, retrying", "stage", stage, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("while %s: %w", stage, ctx.Err())
		case <-giveUp.Done():
			return fmt.Errorf("while %s: %w", stage, giveUp.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, BackoffMax)
	}
}

// Process handles records (each partition's in offset order). It returns nil once
// every record is persisted, routed, or dead-lettered — the caller may then
// commit — and an error only when ctx is done (nothing may be committed).
func (p *Processor) Process(ctx context.Context, recs []Record) error {
	return p.ProcessSession(ctx, ctx, recs)
}

// ProcessSession is Process for a consumer session: ctx bounds the work in
// flight (the shutdown grace), giveUp ends retrying (the session ended, so
// the partition may belong to another process now). After an error nothing
// may be committed; the batch replays, with the same effect, wherever the
// partition goes.
func (p *Processor) ProcessSession(ctx, giveUp context.Context, recs []Record) error {
	d, err := p.Deliver(ctx, giveUp, recs)
	if err != nil {
		return err
	}
	return p.Index(ctx, giveUp, []*Delivered{d})
}

// Delivered is a batch whose records are stored (their timeline rows:
// history, msg_ids, group tables) and routed, and whose index rows (every
// user's feed entries and conversation rows) are still to be written by
// Index before the batch may be committed.
type Delivered struct {
	// Last is the batch's last offset per partition.
	Last  map[int32]int64
	items []store.Item
	start time.Time
	// routedAt is when its events were routed (the index's lag).
	routedAt time.Time
}

// records is what d counts against IndexMaxRecords: its items, and at
// least one.
func (d *Delivered) records() int { return max(1, len(d.items)) }

// Deliver decodes, de-duplicates and decides recs (each partition's in
// offset order), writes their timeline rows and routes them: "pushed"
// implies "stored". The index rows follow in Index, which the caller runs
// for a partition's batches in order, one call after the other; Deliver of
// the next batch need not wait for it (its pushes do not wait for the
// previous batch's per-member writes). Errors as for ProcessSession.
func (p *Processor) Deliver(ctx, giveUp context.Context, recs []Record) (*Delivered, error) {
	if len(recs) == 0 {
		return nil, errors.New("Deliver: empty batch")
	}
	start := time.Now()
	mBatchSize.Observe(float64(len(recs)))
	last := map[int32]int64{} // each partition's last offset
	for _, r := range recs {
		last[r.Part] = r.Off
	}
	items, err := p.decode(ctx, giveUp, recs)
	if err != nil {
		return nil, err
	}
	if items, err = p.dedupe(ctx, giveUp, items); err != nil {
		return nil, err
	}
	if items, err = p.checkReceipts(ctx, giveUp, items); err != nil {
		return nil, err
	}
	for part := range last {
		p.groups.session(part, giveUp)
	}
	gparts := groupParts(items) // of every group decided, kept or not
	items, groups, err := p.applyGroups(ctx, giveUp, items)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	n := len(items)
	items, err = p.persist(ctx, giveUp, items, recs)
	if err != nil || len(items) != n {
		// Failed, or some records were dead-lettered: the states may hold
		// changes that were not stored.
		p.groups.drop(groups)
	} else {
		p.groups.keep(groups, gparts)
	}
	if err != nil {
		return nil, err
	}
	mBatchSeconds.WithLabelValues("persist").Observe(time.Since(t).Seconds())
	p.window.remember(items)
	t = time.Now()
	if err := p.route(ctx, items); err != nil {
		return nil, err
	}
	mBatchSeconds.WithLabelValues("route").Observe(time.Since(t).Seconds())
	mBatchPartitions.Observe(float64(len(last)))
	return &Delivered{Last: last, items: items, start: start, routedAt: time.Now()}, nil
}

// groupParts returns the partition of each group among items.
func groupParts(items []store.Item) map[string]int32 {
	parts := map[string]int32{}
	for _, it := range items {
		if it.Rec.IsGroup() {
			gid, _ := model.ParseGroupConv(it.Rec.ConvID) // validated by Decode
			parts[gid] = it.Part
		}
	}
	return parts
}

// Index writes the index rows of ds (consecutive delivered batches, in
// offset order) as one write — under load, the per-member writes of
// several batches share their requests — and then records each of their
// partitions' persisted head (the start-up guard, the unread pull's sync
// cursor and the API's wait for group changes read it). Once it returns
// nil the batches may be committed. An index write that fails permanently
// on its own record is logged and counted (index_dropped), not retried:
// the record is stored and delivered, only its users' copies lack it.
func (p *Processor) Index(ctx, giveUp context.Context, ds []*Delivered) error {
	if len(ds) == 0 {
		return nil
	}
	var items []store.Item
	for _, d := range ds {
		items = append(items, d.items...)
	}
	t := time.Now()
	if err := p.persistIndex(ctx, giveUp, items); err != nil {
		return err
	}
	mBatchSeconds.WithLabelValues("index").Observe(time.Since(t).Seconds())
	if err := p.setHeads(ctx, giveUp, ds); err != nil {
		return err
	}
	for _, d := range ds {
		mBatchSeconds.WithLabelValues("total").Observe(time.Since(d.start).Seconds())
		mIndexLag.Observe(time.Since(d.routedAt).Seconds())
	}
	mRecords.WithLabelValues("persisted").Add(float64(len(items)))
	if h, ok := p.Router.(LateHinter); ok && time.Since(ds[0].routedAt) > IndexLateAfter {
		// Sessions that logged in up to a second before the routing may
		// not have been in the presence cache yet (its watch's delay).
		h.HintLoggedInSince(ctx, routedUsers(items), ds[0].routedAt.Add(-time.Second))
		mLateIndex.Inc()
	}
	return nil
}

// lastOffsets returns the highest offset of ds of each partition.
func lastOffsets(ds []*Delivered) map[int32]int64 {
	last := map[int32]int64{}
	for _, d := range ds {
		for part, off := range d.Last {
			last[part] = max(last[part], off)
		}
	}
	return last
}

// setHeads records the highest offset of ds of each partition, the
// partitions' writes concurrent.
func (p *Processor) setHeads(ctx, giveUp context.Context, ds []*Delivered) error {
	g, gctx := errgroup.WithContext(ctx)
	for part, off := range lastOffsets(ds) {
		g.Go(func() error {
			return p.retry(gctx, giveUp, "partition_state", func() error {
				return p.Store.SetPartitionState(gctx, part, p.TopicID, off)
			})
		})
	}
	return g.Wait()
}

// routedUsers returns every user the items' events were routed to.
func routedUsers(items []store.Item) []string {
	seen := map[string]struct{}{}
	for _, it := range items {
		for _, u := range routedOf(it).Users {
			seen[u] = struct{}{}
		}
	}
	return slices.Collect(maps.Keys(seen))
}

// persistIndex writes items' index rows; if that fails permanently, one
// record at a time, dropping (and counting) those failing on their own.
func (p *Processor) persistIndex(ctx, giveUp context.Context, items []store.Item) error {
	perm := p.permanent()
	write := func(items []store.Item) error {
		return p.retry(ctx, giveUp, "index", func() error { return p.Store.PersistStage(ctx, items, store.StageIndex) }, perm)
	}
	err := write(items)
	var pe errPermanent
	if !errors.As(err, &pe) {
		return err
	}
	for _, it := range items {
		err := write([]store.Item{it})
		if errors.As(err, &pe) {
			p.Log.Error("index rows of a stored record cannot be written; dropped", "partition", it.Part, "offset", it.Off, "err", pe.error)
			mRecords.WithLabelValues("index_dropped").Inc()
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *Processor) permanent() func(error) bool {
	if p.Permanent != nil {
		return p.Permanent
	}
	return store.IsPermanent
}

// decode parses recs; undecodable or invalid ones go to the dead-letter
// topic. Records are checked against the protocol's ceiling, not the
// configured send limit: they were acknowledged under whatever limit held
// when they were sent.
func (p *Processor) decode(ctx, giveUp context.Context, recs []Record) ([]store.Item, error) {
	items := make([]store.Item, 0, len(recs))
	for _, r := range recs {
		rec, err := model.Decode(r.Value, model.MaxBodyCeiling)
		if err == nil && string(r.Key) != rec.ConvID {
			err = fmt.Errorf("record key %q is not its conversation %q", r.Key, rec.ConvID)
		}
		if err != nil {
			if err := p.deadLetter(ctx, giveUp, r, err); err != nil {
				return nil, err
			}
			continue
		}
		items = append(items, store.Item{Part: r.Part, Off: r.Off, Rec: rec})
	}
	return items, nil
}

// route hands items to the router (nothing to do for none).
func (p *Processor) route(ctx context.Context, items []store.Item) error {
	if len(items) == 0 {
		return nil
	}
	routed := make([]Routed, len(items))
	for i, it := range items {
		routed[i] = routedOf(it)
	}
	if err := p.Router.Route(ctx, routed); err != nil {
		return fmt.Errorf("while routing: %w", err)
	}
	return nil
}

// routedOf is an item's event and who gets it pushed.
func routedOf(it store.Item) Routed {
	ev := it.Rec.Event(it.Off)
	switch {
	case it.Rejected:
		// Every device of the sender, the sending one included: its send
		// was answered with success.
		ev.Kind, ev.RefSeq, ev.Reason = protocol.KindRejected, it.StoredSeq, it.Reason
		return Routed{Event: ev, Users: []string{it.Rec.From}}
	case it.Rec.IsGroup():
		return Routed{Event: ev, Users: it.Members, ExceptDevice: it.Rec.DeviceID}
	case it.Rec.Kind == protocol.KindDelivered:
		return Routed{Event: ev, Users: []string{it.Rec.To()}}
	}
	return Routed{Event: ev, Users: []string{it.Rec.From, it.Rec.To()}, ExceptDevice: it.Rec.DeviceID}
}

// persist writes items' timeline rows; if the batch fails permanently, it
// writes them one by one, in order, and dead-letters the records that fail
// permanently on their own. It returns the items persisted.
func (p *Processor) persist(ctx, giveUp context.Context, items []store.Item, recs []Record) ([]store.Item, error) {
	perm := p.permanent()
	persist := func(items []store.Item) error { return p.Store.PersistStage(ctx, items, store.StageTimeline) }
	err := p.retry(ctx, giveUp, "persist", func() error { return persist(items) }, perm)
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
		err := p.retry(ctx, giveUp, "persist", func() error { return persist([]store.Item{it}) }, perm)
		if errors.As(err, &pe) {
			if err := p.deadLetter(ctx, giveUp, byOff[it.Off], pe.error); err != nil {
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

func (p *Processor) deadLetter(ctx, giveUp context.Context, r Record, why error) error {
	p.Log.Warn("dead-lettering record", "partition", r.Part, "offset", r.Off, "reason", why)
	headers := []mlog.Header{
		{Key: "reason", Value: why.Error()},
		{Key: "partition", Value: fmt.Sprint(r.Part)},
		{Key: "offset", Value: fmt.Sprint(r.Off)},
	}
	err := p.retry(ctx, giveUp, "dead_letter", func() error {
		_, _, err := p.DeadLetter.Produce(string(r.Key), r.Value, headers...)
		return err
	})
	if err == nil {
		mRecords.WithLabelValues("dead_letter").Inc()
	}
	return err
}
