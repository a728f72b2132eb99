package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// Item is one decoded, de-duplicated record at its log position.
type Item struct {
	Part int32
	Off  int64
	Rec  model.Record
	// Hash is the content hash of a message record (model.ContentHash),
	// stored in its msg_ids row.
	Hash []byte
	// Rejected marks a message record whose msg_id was stored earlier in
	// log order with other content: only the sender's feed gets an entry
	// (kind rejected, ref_seq StoredSeq), nothing else is written.
	Rejected  bool
	StoredSeq int64
	// Reason says why a rejected record was not stored (a protocol error
	// code; "" is ErrIdempotencyClash).
	Reason string

	// Group records and messages (set by the pipeline, which applies the
	// group's changes in log order): Members are the users the record
	// reaches — feeds, conversation rows, pushes — at its place in the log
	// (for a removal or leave, the leaving users too, so they see it).
	Members []string
	// Roles are the member rows a group change (re)writes: joined users
	// (created, joined) and role changes.
	Roles map[string]protocol.Role
	// Left are the users a group change removes (removed, left,
	// dissolved).
	Left []string
}

// Bounds of the write path.
const (
	maxBatchStatements = 32       // statements per Cassandra batch
	maxBatchBytes      = 40 << 10 // below batch_size_fail_threshold (50 KiB)
	writeConcurrency   = 64       // statements/batches in flight per Persist
	// MaxWritesInFlight bounds the pipeline's writes in flight per process,
	// across all partitions, so a backlog cannot swamp Cassandra and starve
	// the API's reads (sync, history, a retry's msg_ids lookup).
	MaxWritesInFlight = 96
	// MaxIndexWritesInFlight bounds the index stage's share of them: a
	// large lot of per-member writes never holds every slot, so the
	// timeline rows of the next batch (what its pushes wait for) always
	// find one. It is kept small because a slot free here is not enough:
	// Cassandra serves requests first come, first served, on a few
	// request threads, so every index batch in flight beyond those is
	// queued inside Cassandra ahead of the next timeline write. With 64, a
	// group of 100 at 100 msg/s waited 25–34 ms for its timeline rows and
	// reached all members at p99 544–910 ms; with 16, 18–22 ms and
	// 155–513 ms, and the index still kept up (its lag 390–450 ms, under
	// IndexMaxLag); with 4 or 8 it fell behind and stalled the pushes
	// (docs/benchmarks.md, "The index stage's share of Cassandra").
	MaxIndexWritesInFlight = 16
)

// indexStage marks the context of an index-stage write (acquire takes an
// index slot first).
type indexStage struct{}

func (st *Store) acquire(ctx context.Context) (func(), error) {
	if ctx.Value(indexStage{}) != nil {
		select {
		case st.indexSlots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	release := func() {
		<-st.writes
		if ctx.Value(indexStage{}) != nil {
			<-st.indexSlots
		}
	}
	select {
	case st.writes <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		if ctx.Value(indexStage{}) != nil {
			<-st.indexSlots
		}
		return nil, ctx.Err()
	}
}

const (
	cqlInsertMessage = `INSERT INTO messages (conv_id, bucket, seq, msg_id, client_msg_id, from_user, device_id, type, body, sent_at_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
	cqlRecallMessage = `UPDATE messages USING TIMESTAMP ? SET recalled = true, body = null WHERE conv_id = ? AND bucket = ? AND seq = ?`
	cqlConvBucket    = `INSERT INTO conv_buckets (conv_id, bucket) VALUES (?, ?)`
	cqlFeedBucket    = `INSERT INTO feed_buckets (user_id, part, bucket) VALUES (?, ?, ?)`
	cqlInsertFeed    = `INSERT INTO feed (user_id, part, bucket, off, kind, conv_id, from_user, device_id, ref_seq, at_ms, msg_id, client_msg_id, type, body, reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`
	// A group message's feed entry: a reference to its history row (no
	// msg_id, no body; Sync hydrates it).
	cqlInsertFeedRef = `INSERT INTO feed (user_id, part, bucket, off, kind, conv_id, from_user, at_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?`
	// Feed rows and their recall cells expire after the feed retention
	// (TTL 0: never; see retention.go).
	cqlRecallFeed = `UPDATE feed USING TIMESTAMP ? AND TTL ? SET recalled = true, body = null WHERE user_id = ? AND part = ? AND bucket = ? AND off = ?`
	cqlPartState  = `UPDATE partition_state USING TIMESTAMP ? SET max_off = ?, topic_id = ? WHERE topic = ? AND part = ?`
)

// Conversation max-register columns.
var convColumns = [...]string{"last_seq", "last_msg_seq", "read_seq", "peer_read_seq", "peer_delivered_seq", "last_recalled_seq"}

const (
	colLast = iota
	colLastMsg
	colRead
	colPeerRead
	colPeerDelivered
	colLastRecalled
)

type convUpdate struct {
	peer string
	val  [len(convColumns)]int64 // -1: unchanged
	last *lastMsg                // the batch's newest message (convlist_write.go)
}

// convBucket is one conv_buckets marker.
type convBucket struct {
	conv string
	b    int32
}

type stmt struct {
	cql  string
	args []any
	size int
}

func bodyJSON(b *protocol.Body) (string, int) {
	if b == nil {
		return "", 0
	}
	enc, _ := json.Marshal(b)
	return string(enc), len(enc)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Stage selects which of a batch's writes PersistStage makes.
type Stage uint8

const (
	// StageTimeline is what makes a record stored: the conversation's
	// history rows (messages, group changes, recall cells of history),
	// msg_ids rows and the group tables. History, the pipeline's
	// de-duplication and its group state read only these.
	StageTimeline Stage = 1 << iota
	// StageIndex is every user's copy: feed entries (sync), conversation
	// rows and the recency index (unread pull, list, counts), and the
	// recall cells of feed entries. It may be written later than the
	// timeline, but a partition's index batches must be written in offset
	// order, one after the other (the feed contract in doc.go).
	StageIndex
	// StageAll is both, as one write.
	StageAll = StageTimeline | StageIndex
)

// Persist writes the whole effect of items (StageAll).
func (st *Store) Persist(ctx context.Context, items []Item) error {
	return st.PersistStage(ctx, items, StageAll)
}

// PersistStage writes stage's part of the effect of items (of one or more
// partitions, each partition's in offset order): message rows and their
// msg_ids rows, both participants' feeds and conversation rows (a delivered
// receipt: the peer's only; a rejected send: the sender's feed only), and
// recalls. A user's feed is kept per partition, so the items of several
// partitions write several feeds of one user, each in its own order. It is
// idempotent; on error the caller retries it whole.
func (st *Store) PersistStage(ctx context.Context, items []Item, stage Stage) error {
	if len(items) == 0 {
		return nil
	}
	timeline, index := stage&StageTimeline != 0, stage&StageIndex != 0
	if !timeline {
		ctx = context.WithValue(ctx, indexStage{}, true)
	}
	type userWork struct {
		feeds map[int32]map[int32][]stmt // per partition, per bucket
		convs map[string]*convUpdate
	}
	users := map[string]*userWork{}
	work := func(u string) *userWork {
		w := users[u]
		if w == nil {
			w = &userWork{feeds: map[int32]map[int32][]stmt{}, convs: map[string]*convUpdate{}}
			users[u] = w
		}
		return w
	}
	bucketsOf := func(w *userWork, part int32) map[int32][]stmt {
		bs := w.feeds[part]
		if bs == nil {
			bs = map[int32][]stmt{}
			w.feeds[part] = bs
		}
		return bs
	}
	var discard convUpdate // what conv returns when the index is not written
	conv := func(u, convID, peer string) *convUpdate {
		if !index {
			return &discard
		}
		w := work(u)
		c := w.convs[convID]
		if c == nil {
			c = &convUpdate{peer: peer}
			for i := range c.val {
				c.val[i] = -1
			}
			w.convs[convID] = c
		}
		return c
	}
	set := func(c *convUpdate, col int, v int64) {
		if v > c.val[col] {
			c.val[col] = v
		}
	}
	msgRows := map[string][]stmt{} // per (conv, bucket): one partition
	var msgRecalls []stmt          // after the message rows of the same batch
	var feedRecalls []stmt         // after the feed inserts of the same batch
	var msgIDs []stmt              // one partition each
	convBuckets := map[convBucket]struct{}{}
	for _, it := range items {
		r := &it.Rec
		part := it.Part
		from, to := r.From, r.To()
		ts := it.Off + 1
		body, bodyLen := bodyJSON(r.Body)
		b := model.Bucket(it.Off) // of the feed entries and the message row
		if r.Kind == protocol.KindGroup {
			body, bodyLen = groupChangeJSON(r.Group)
		}
		feed := func(u string, kind protocol.Kind, ref int64) {
			if !index {
				return
			}
			bs := bucketsOf(work(u), part)
			if kind == protocol.KindMessage && r.IsGroup() && !it.Rejected {
				// A group message's entry refers to its history row, which
				// Sync reads (hydrate.go): its content is stored once, not
				// once per member.
				bs[b] = append(bs[b], stmt{cqlInsertFeedRef, []any{
					u, part, b, it.Off, string(kind), r.ConvID, from, r.AtMs, ts, st.ret.ttl}, 96})
				return
			}
			bs[b] = append(bs[b], stmt{cqlInsertFeed, []any{
				u, part, b, it.Off, string(kind), r.ConvID, from, nullable(r.DeviceID), ref, r.AtMs,
				nullable(r.MsgID), nullable(r.ClientMsgID), nullable(string(r.Type)), nullable(body), nullable(it.Reason), ts, st.ret.ttl}, 200 + bodyLen})
		}
		switch {
		case it.Rejected:
			feed(from, protocol.KindRejected, it.StoredSeq) // the sender's devices only
			continue
		case r.IsGroup():
			gw := groupWork{st: st, it: &it, part: part, b: b, body: body, bodyLen: bodyLen, index: index, feed: feed,
				conv: func(u string) *convUpdate { return conv(u, r.ConvID, "") }, set: set}
			gw.build()
			for k, rows := range gw.msgRows {
				msgRows[k] = append(msgRows[k], rows...)
			}
			if len(gw.msgRows) > 0 {
				convBuckets[convBucket{r.ConvID, b}] = struct{}{}
			}
			msgIDs = append(msgIDs, gw.single...)
			msgRecalls = append(msgRecalls, gw.msgRecalls...)
			feedRecalls = append(feedRecalls, gw.feedRecalls...)
			continue
		case r.Kind == protocol.KindDelivered:
			// Only the peer (whose messages were delivered) needs it: the
			// acking user's own feed and conversation row stay as they are.
			feed(to, r.Kind, r.RefSeq)
			ct := conv(to, r.ConvID, from)
			set(ct, colLast, it.Off)
			set(ct, colPeerDelivered, r.RefSeq)
			continue
		}
		feed(from, r.Kind, r.RefSeq)
		feed(to, r.Kind, r.RefSeq)
		cf, ct := conv(from, r.ConvID, to), conv(to, r.ConvID, from)
		set(cf, colLast, it.Off)
		set(ct, colLast, it.Off)
		switch r.Kind {
		case protocol.KindMessage:
			k := fmt.Sprintf("%s\x00%d", r.ConvID, b)
			msgRows[k] = append(msgRows[k], stmt{cqlInsertMessage, []any{
				r.ConvID, b, it.Off, r.MsgID, r.ClientMsgID, from, nullable(r.DeviceID), string(r.Type), body, r.AtMs, ts}, 200 + bodyLen})
			convBuckets[convBucket{r.ConvID, b}] = struct{}{}
			msgIDs = append(msgIDs, stmt{cqlInsertMsgID, []any{r.MsgID, r.ConvID, it.Off, it.Hash, r.AtMs, msgIDTimestamp(it.Off)}, 64})
			set(cf, colLastMsg, it.Off)
			set(ct, colLastMsg, it.Off)
			cf.noteMessage(it.Off, r)
			ct.noteMessage(it.Off, r)
			set(cf, colRead, it.Off) // sending implies having read the conversation
		case protocol.KindRead:
			set(cf, colRead, r.RefSeq)
			set(ct, colPeerRead, r.RefSeq)
		case protocol.KindRecall:
			rb := model.Bucket(r.RefSeq)
			set(cf, colLastRecalled, r.RefSeq)
			set(ct, colLastRecalled, r.RefSeq)
			msgRecalls = append(msgRecalls, stmt{cqlRecallMessage, []any{ts, r.ConvID, rb, r.RefSeq}, 64})
			for _, u := range []string{from, to} {
				feedRecalls = append(feedRecalls, stmt{cqlRecallFeed, []any{ts, st.ret.ttl, u, part, rb, r.RefSeq}, 64})
			}
		}
	}

	if !timeline {
		msgRows, msgIDs, msgRecalls, convBuckets = nil, nil, nil, nil
	}
	if err := st.writeConvBuckets(ctx, convBuckets); err != nil {
		return err
	}
	// The rows: every partition's statements of this batch as one group,
	// groups packed into few batches (pack.go). A user's feed that spans
	// buckets, or whose bucket marker is not known to be written, goes the
	// ordered way (writeFeed) instead.
	var groups [][]stmt
	for _, rows := range msgRows {
		groups = append(groups, rows)
	}
	for _, s := range msgIDs {
		groups = append(groups, []stmt{s})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for u, w := range users {
		for part, buckets := range w.feeds {
			if b, ok := st.singleKnownBucket(u, part, buckets); ok {
				groups = append(groups, buckets[b])
			} else if len(buckets) > 0 {
				g.Go(func() error { return st.writeFeed(gctx, u, part, buckets) })
			}
		}
		if cs := st.convStmts(u, w.convs); len(cs) > 0 {
			groups = append(groups, cs)
		}
	}
	st.writeGroups(gctx, g, groups)
	if err := g.Wait(); err != nil {
		return err
	}
	for u, w := range users {
		for convID := range w.convs {
			st.markers.add("p" + u + "\x00" + convID)
		}
	}
	return st.execAll(ctx, append(msgRecalls, feedRecalls...))
}

// writeConvBuckets writes the conv_buckets markers not known to be written,
// before the message rows (history reads buckets by marker; a marker
// before its rows is harmless).
func (st *Store) writeConvBuckets(ctx context.Context, convBuckets map[convBucket]struct{}) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for k := range convBuckets {
		key := fmt.Sprintf("c%s\x00%d", k.conv, k.b)
		if st.markers.has(key) {
			continue
		}
		g.Go(func() error {
			if err := st.exec(gctx, stmt{cqlConvBucket, []any{k.conv, k.b}, 64}); err != nil {
				return fmt.Errorf("while writing conversation bucket: %w", err)
			}
			st.markers.add(key)
			return nil
		})
	}
	return g.Wait()
}

// execAll runs stmts concurrently, each on its own.
func (st *Store) execAll(ctx context.Context, stmts []stmt) error {
	if len(stmts) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeConcurrency)
	for _, s := range stmts {
		g.Go(func() error { return st.exec(gctx, s) })
	}
	return g.Wait()
}

func (st *Store) exec(ctx context.Context, s stmt) error {
	release, err := st.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := st.s.Query(s.cql, s.args...).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("while writing: %w", err)
	}
	return nil
}

// writeFeed writes one user's feed entries of one partition, bucket by
// bucket in offset order, each bucket's marker before its entries.
func (st *Store) writeFeed(ctx context.Context, user string, part int32, buckets map[int32][]stmt) error {
	for _, b := range slices.Sorted(maps.Keys(buckets)) {
		key := fmt.Sprintf("f%s\x00%d\x00%d", user, part, b)
		if !st.markers.has(key) {
			if err := st.exec(ctx, stmt{cqlFeedBucket, []any{user, part, b}, 64}); err != nil {
				return fmt.Errorf("while writing feed bucket: %w", err)
			}
			st.markers.add(key)
		}
		if err := st.batches(ctx, buckets[b]); err != nil {
			return fmt.Errorf("while writing feed of %s: %w", user, err)
		}
	}
	return nil
}

// batches writes stmts (one partition) in order, as few unlogged
// single-partition batches as the size bounds allow, one after the other.
func (st *Store) batches(ctx context.Context, stmts []stmt) error {
	for len(stmts) > 0 {
		n, size := 0, 0
		for n < len(stmts) && n < maxBatchStatements && (n == 0 || size+stmts[n].size <= maxBatchBytes) {
			size += stmts[n].size
			n++
		}
		if err := st.batch(ctx, stmts[:n]); err != nil {
			return err
		}
		stmts = stmts[n:]
	}
	return nil
}

// batch writes stmts as one request: a single statement, or an unlogged
// batch (Cassandra applies each partition's part of it atomically and in
// isolation).
func (st *Store) batch(ctx context.Context, stmts []stmt) error {
	if len(stmts) == 1 {
		return st.exec(ctx, stmts[0])
	}
	b := st.s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	for _, s := range stmts {
		b.Query(s.cql, s.args...)
	}
	release, err := st.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := st.s.ExecuteBatch(b); err != nil {
		return fmt.Errorf("while writing batch: %w", err)
	}
	return nil
}

// convStmts returns one user's conversation max-register updates (one
// partition: the user's conversations) and recency index rows (the user's
// conv_activity partition: the same partition key, so the same replicas).
func (st *Store) convStmts(user string, convs map[string]*convUpdate) []stmt {
	var stmts []stmt
	for convID, c := range convs {
		key := "p" + user + "\x00" + convID
		if !st.markers.has(key) {
			stmts = append(stmts, stmt{`UPDATE conversations USING TIMESTAMP 1 SET peer = ? WHERE user_id = ? AND conv_id = ?`,
				[]any{c.peer, user, convID}, 64})
		}
		// Columns with the same value share a statement (and timestamp).
		byVal := map[int64][]string{}
		var vals []int64
		for col, v := range c.val {
			if v < 0 {
				continue
			}
			if byVal[v] == nil {
				vals = append(vals, v)
			}
			byVal[v] = append(byVal[v], convColumns[col])
		}
		for _, v := range vals {
			sets := ""
			args := []any{v + 1}
			for i, col := range byVal[v] {
				if i > 0 {
					sets += ", "
				}
				sets += col + " = ?"
				args = append(args, v)
			}
			extra, extraArgs := c.convListSets(v)
			sets += extra
			args = append(args, extraArgs...)
			args = append(args, user, convID)
			stmts = append(stmts, stmt{`UPDATE conversations USING TIMESTAMP ? SET ` + sets + ` WHERE user_id = ? AND conv_id = ?`, args, 64})
		}
		stmts = append(stmts, c.activityStmts(user, convID)...)
	}
	return stmts
}

// SetPartitionState records the highest persisted offset of part and the
// topic id it belongs to (a max-register).
func (st *Store) SetPartitionState(ctx context.Context, part int32, topicID string, maxOff int64) error {
	if err := st.s.Query(cqlPartState, maxOff+1, maxOff, topicID, st.topic, part).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("while writing partition state: %w", err)
	}
	return nil
}

// PartitionState returns the recorded topic id and highest persisted offset
// of part; ok=false when nothing was persisted yet.
func (st *Store) PartitionState(ctx context.Context, part int32) (topicID string, maxOff int64, ok bool, err error) {
	var id *string
	var off *int64
	err = st.s.Query(`SELECT topic_id, max_off FROM partition_state WHERE topic = ? AND part = ?`, st.topic, part).
		WithContext(ctx).Scan(&id, &off)
	if err == gocql.ErrNotFound {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("while reading partition state: %w", err)
	}
	if id != nil {
		topicID = *id
	}
	if off == nil {
		return topicID, 0, false, nil
	}
	return topicID, *off, true, nil
}

// PersistedHeads returns, per partition, the highest persisted offset + 1
// (0 when none): everything below it is persisted.
func (st *Store) PersistedHeads(ctx context.Context) ([]int64, error) {
	heads := make([]int64, st.partitions)
	iter := st.s.Query(`SELECT part, max_off FROM partition_state WHERE topic = ?`, st.topic).WithContext(ctx).Iter()
	var part int32
	var off *int64
	for iter.Scan(&part, &off) {
		if off != nil && int(part) < len(heads) && part >= 0 {
			heads[part] = *off + 1
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("while reading partition heads: %w", err)
	}
	return heads, nil
}
