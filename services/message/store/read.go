package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// MaxPage bounds every page the store returns.
const MaxPage = 100

// bucketsPerRead bounds the bucket markers read at once.
const bucketsPerRead = 64

// readBuckets runs a query that selects one bucket column (conv_buckets or
// feed_buckets markers) and returns the buckets in the order read.
func (st *Store) readBuckets(ctx context.Context, what, cql string, args ...any) ([]int32, error) {
	iter := st.s.Query(cql, args...).WithContext(ctx).Iter()
	var buckets []int32
	var b int32
	for iter.Scan(&b) {
		buckets = append(buckets, b)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("while reading %s buckets: %w", what, err)
	}
	return buckets, nil
}

func clampLimit(n int) int {
	if n <= 0 || n > MaxPage {
		return MaxPage
	}
	return n
}

func decodeBody(s *string) *protocol.Body {
	if s == nil || *s == "" {
		return nil
	}
	var b protocol.Body
	if json.Unmarshal([]byte(*s), &b) != nil {
		return nil
	}
	return &b
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

const messageColumns = `seq, msg_id, client_msg_id, from_user, device_id, type, body, recalled, sent_at_ms`

func scanMessage(conv string, sc *gocql.Iter) (protocol.Event, bool) {
	var seq int64
	var msgID, cmid, from, dev, typ, body *string
	var recalled *bool
	var sent *int64
	if !sc.Scan(&seq, &msgID, &cmid, &from, &dev, &typ, &body, &recalled, &sent) {
		return protocol.Event{}, false
	}
	return messageEvent(conv, seq, str(msgID), str(cmid), str(from), str(dev), str(typ), body, recalled != nil && *recalled, sent), true
}

func messageEvent(conv string, seq int64, msgID, cmid, from, dev, typ string, body *string, recalled bool, sent *int64) protocol.Event {
	if typ == groupEventType {
		return groupEvent(conv, seq, from, dev, body, sent)
	}
	to, _ := model.Peer(conv, from)
	m := &protocol.Message{MsgID: msgID, ClientMsgID: cmid, From: from, To: to, Type: protocol.MessageType(typ), Recalled: recalled}
	if sent != nil {
		m.SentAtMs = *sent
	}
	if !recalled {
		m.Body = decodeBody(body)
	}
	return protocol.Event{Kind: protocol.KindMessage, ConvID: conv, Seq: seq, From: from, DeviceID: dev, Message: m, AtMs: m.SentAtMs}
}

// Message returns the message at seq of conv (not a group change).
func (st *Store) Message(ctx context.Context, conv string, seq int64) (protocol.Event, bool, error) {
	it := st.s.Query(`SELECT `+messageColumns+` FROM messages WHERE conv_id = ? AND bucket = ? AND seq = ?`,
		conv, model.Bucket(seq), seq).WithContext(ctx).Iter()
	ev, ok := scanMessage(conv, it)
	if err := it.Close(); err != nil {
		return ev, false, fmt.Errorf("while reading message: %w", err)
	}
	if ok && (ev.Message == nil || ev.Message.MsgID == "") {
		ok = false // a recall of a message that was never stored
	}
	return ev, ok, nil
}

// TimelineHas reports whether conv's history holds a row at seq (a
// message, recalled or not, or a group change). The API checks a read mark
// or a delivered ack against it when the user's conversation row does not
// reach seq yet: the pipeline writes that row after it routes the event.
func (st *Store) TimelineHas(ctx context.Context, conv string, seq int64) (bool, error) {
	var got int64
	err := st.s.Query(`SELECT seq FROM messages WHERE conv_id = ? AND bucket = ? AND seq = ?`,
		conv, model.Bucket(seq), seq).WithContext(ctx).Scan(&got)
	if err == gocql.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("while reading the conversation's history: %w", err)
	}
	return true, nil
}

// scanMessages appends the messages it yields to out, skipping seq slots
// that hold no message, sets *cursor to the last seq scanned, and closes it.
func scanMessages(conv string, it *gocql.Iter, out []protocol.Event, cursor *int64) ([]protocol.Event, error) {
	for {
		ev, ok := scanMessage(conv, it)
		if !ok {
			break
		}
		if ev.Kind == protocol.KindGroup || ev.Message.MsgID != "" {
			out = append(out, ev)
		}
		*cursor = ev.Seq
	}
	return out, it.Close()
}

// History returns up to limit messages of conv with seq < before, newest
// first, and whether older ones may remain.
func (st *Store) History(ctx context.Context, conv string, before int64, limit int) ([]protocol.Event, bool, error) {
	limit = clampLimit(limit)
	if before <= 0 {
		return nil, false, nil
	}
	before = min(before, model.MaxSeq)
	var out []protocol.Event
	top := model.Bucket(before - 1)
	for {
		buckets, err := st.readBuckets(ctx, "history", `SELECT bucket FROM conv_buckets WHERE conv_id = ? AND bucket <= ? LIMIT ?`,
			conv, top, bucketsPerRead)
		if err != nil {
			return nil, false, err
		}
		for _, b := range buckets {
			it := st.s.Query(`SELECT `+messageColumns+` FROM messages WHERE conv_id = ? AND bucket = ? AND seq < ? LIMIT ?`,
				conv, b, before, limit-len(out)).WithContext(ctx).Iter()
			if out, err = scanMessages(conv, it, out, &before); err != nil {
				return nil, false, fmt.Errorf("while reading history: %w", err)
			}
			if len(out) >= limit {
				return out, true, nil
			}
		}
		if len(buckets) < bucketsPerRead {
			return out, false, nil
		}
		top = buckets[len(buckets)-1] - 1
	}
}

// ConvState is one user's view of one conversation.
type ConvState struct {
	ConvID           string `json:"conv_id"`
	Peer             string `json:"peer"`
	LastSeq          int64  `json:"last_seq"`
	LastMsgSeq       int64  `json:"last_msg_seq"`
	ReadSeq          int64  `json:"read_seq"`
	PeerReadSeq      int64  `json:"peer_read_seq"`
	PeerDeliveredSeq int64  `json:"peer_delivered_seq"`
}

const convColumnsCQL = `conv_id, peer, last_seq, last_msg_seq, read_seq, peer_read_seq, peer_delivered_seq`

func scanConv(sc *gocql.Iter) (ConvState, bool) {
	var c ConvState
	var peer *string
	var v [5]*int64
	if !sc.Scan(&c.ConvID, &peer, &v[0], &v[1], &v[2], &v[3], &v[4]) {
		return c, false
	}
	c.Peer = str(peer)
	dst := []*int64{&c.LastSeq, &c.LastMsgSeq, &c.ReadSeq, &c.PeerReadSeq, &c.PeerDeliveredSeq}
	for i, p := range v {
		*dst[i] = -1
		if p != nil {
			*dst[i] = *p
		}
	}
	return c, true
}

// Conversation returns user's state of conv; ok=false when the user has no
// event in it yet. Unset seqs are -1.
func (st *Store) Conversation(ctx context.Context, user, conv string) (ConvState, bool, error) {
	it := st.s.Query(`SELECT `+convColumnsCQL+` FROM conversations WHERE user_id = ? AND conv_id = ?`, user, conv).WithContext(ctx).Iter()
	c, ok := scanConv(it)
	if err := it.Close(); err != nil {
		return c, false, fmt.Errorf("while reading conversation: %w", err)
	}
	return c, ok, nil
}

// Conversations returns up to limit of user's conversations with conv_id >
// after (>= when inclusive), in conv_id order.
func (st *Store) Conversations(ctx context.Context, user, after string, inclusive bool, limit int) ([]ConvState, error) {
	op := ">"
	if inclusive {
		op = ">="
	}
	it := st.s.Query(`SELECT `+convColumnsCQL+` FROM conversations WHERE user_id = ? AND conv_id `+op+` ? LIMIT ?`, user, after, limit).
		WithContext(ctx).PageSize(limit).Iter()
	var out []ConvState
	for {
		c, ok := scanConv(it)
		if !ok {
			break
		}
		out = append(out, c)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("while listing conversations: %w", err)
	}
	return out, nil
}

const feedColumns = `off, kind, conv_id, from_user, device_id, ref_seq, at_ms, msg_id, client_msg_id, type, body, recalled, reason`

func scanFeed(sc *gocql.Iter) (protocol.Event, bool) {
	var off int64
	var kind, conv, from, dev, msgID, cmid, typ, body, reason *string
	var ref, at *int64
	var recalled *bool
	if !sc.Scan(&off, &kind, &conv, &from, &dev, &ref, &at, &msgID, &cmid, &typ, &body, &recalled, &reason) {
		return protocol.Event{}, false
	}
	k := protocol.Kind(str(kind))
	if k == "" {
		// Only a recall's cells outlived the row (they were written later,
		// with the same TTL): the entry itself has expired.
		return protocol.Event{Seq: off}, true
	}
	if k == protocol.KindMessage || k == protocol.KindRejected {
		ev := messageEvent(str(conv), off, str(msgID), str(cmid), str(from), str(dev), str(typ), body, recalled != nil && *recalled, at)
		if k == protocol.KindRejected {
			ev.Kind, ev.Reason = k, str(reason)
			if ref != nil {
				ev.RefSeq = *ref
			}
		}
		return ev, true
	}
	if k == protocol.KindGroup {
		return groupEvent(str(conv), off, str(from), str(dev), body, at), true
	}
	ev := protocol.Event{Kind: k, ConvID: str(conv), Seq: off, From: str(from), DeviceID: str(dev)}
	if ref != nil {
		ev.RefSeq = *ref
	}
	if at != nil {
		ev.AtMs = *at
	}
	return ev, true
}

// SyncPage is one page of a user's feed.
type SyncPage struct {
	Events []protocol.Event
	Next   model.SyncCursor
	More   bool
}

// Sync returns up to limit events of user's feed after cur, in offset order
// per partition, partitions in index order. See the package doc for why no
// event that lands later can fall behind the returned cursor. A cursor
// whose time horizon is older than the feed retention gets an error
// wrapping ErrCursorExpired (retention.go).
func (st *Store) Sync(ctx context.Context, user string, cur model.SyncCursor, limit int) (SyncPage, error) {
	limit = clampLimit(limit)
	start := time.Now().UnixMilli()
	since, err := st.checkCursor(ctx, cur, start)
	if err != nil {
		return SyncPage{}, err
	}
	page := SyncPage{Next: model.SyncCursor{Next: append([]int64(nil), cur.Next...), SinceMs: since}}
	// Markers first (all partitions at once): a bucket followed by a marker
	// read now is complete.
	markers := make([][]int32, len(page.Next.Next))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for p := range markers {
		g.Go(func() error {
			var err error
			markers[p], err = st.readBuckets(gctx, "feed", `SELECT bucket FROM feed_buckets WHERE user_id = ? AND part = ? AND bucket >= ? LIMIT ?`,
				user, p, model.Bucket(page.Next.Next[p]), bucketsPerRead)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return page, err
	}
	for p := range page.Next.Next {
		if len(page.Events) >= limit {
			page.More = true
			break
		}
		next := page.Next.Next[p]
		buckets := markers[p]
		full := false
		for i, b := range buckets {
			from := max(next, model.BucketStart(b))
			want := limit - len(page.Events)
			it := st.s.Query(`SELECT `+feedColumns+` FROM feed WHERE user_id = ? AND part = ? AND bucket = ? AND off >= ? LIMIT ?`,
				user, p, b, from, want).WithContext(ctx).Iter()
			got := 0
			for {
				ev, ok := scanFeed(it)
				if !ok {
					break
				}
				if ev.Kind != "" {
					page.Events = append(page.Events, ev)
				}
				next = ev.Seq + 1
				got++
			}
			if err := it.Close(); err != nil {
				return page, fmt.Errorf("while reading feed: %w", err)
			}
			if got >= want {
				full = true
				break
			}
			// Bucket b is exhausted; it is also complete if a later marker
			// was seen (read before it), so the cursor may move past it.
			if i+1 < len(buckets) {
				next = max(next, model.BucketStart(buckets[i+1]))
			}
		}
		page.Next.Next[p] = next
		if full || len(buckets) == bucketsPerRead {
			page.More = true
			if full {
				break
			}
		}
	}
	if !page.More {
		// Every partition was read to its end: whatever lies after the new
		// cursor was stored after this sync began.
		page.Next.SinceMs = start
	}
	if err := st.hydrate(ctx, page.Events); err != nil {
		return SyncPage{}, err
	}
	return page, nil
}

// UnreadPage is one page of a user's unread pull.
type UnreadPage struct {
	Events []protocol.Event
	Next   model.UnreadCursor
	More   bool
}

// convScan bounds the conversations read per round of Unread, and
// maxConvsPerPage the conversations one page may walk: a user with very many
// read conversations gets short (even empty) pages with has_more, never an
// unbounded scan.
const (
	convScan        = 200
	maxConvsPerPage = 2000
)

// Unread returns up to limit messages after user's read cursors, walking
// conversations in conv_id order and each one's messages in seq order.
func (st *Store) Unread(ctx context.Context, user string, cur model.UnreadCursor, limit int) (UnreadPage, error) {
	limit = clampLimit(limit)
	var page UnreadPage
	after, inclusive := cur.ConvID, true
	scanned := 0
	for {
		convs, err := st.Conversations(ctx, user, after, inclusive, convScan)
		inclusive = false
		if err != nil {
			return page, err
		}
		for _, c := range convs {
			after = c.ConvID
			scanned++
			from := c.ReadSeq
			if c.ConvID == cur.ConvID && cur.After > from {
				from = cur.After
			}
			if c.LastMsgSeq <= from {
				continue
			}
			want := limit - len(page.Events)
			evs, err := st.messagesAfter(ctx, c.ConvID, from, c.LastMsgSeq, want)
			if err != nil {
				return page, err
			}
			page.Events = append(page.Events, evs...)
			if len(page.Events) >= limit {
				last := page.Events[len(page.Events)-1]
				page.Next = model.UnreadCursor{ConvID: c.ConvID, After: last.Seq}
				page.More = true
				return page, nil
			}
		}
		if len(convs) < convScan {
			return page, nil
		}
		if scanned >= maxConvsPerPage {
			// Resume after the last conversation walked (fully consumed up
			// to its last message seq as read).
			c := convs[len(convs)-1]
			page.Next = model.UnreadCursor{ConvID: c.ConvID, After: max(c.LastMsgSeq, c.ReadSeq)}
			page.More = true
			return page, nil
		}
	}
}

// messagesAfter returns up to limit messages of conv with seq > after, in
// seq order. last is the conversation's last message seq as known: when it
// lies in the same bucket as after+1 (the common case) the bucket markers
// need no read.
func (st *Store) messagesAfter(ctx context.Context, conv string, after, last int64, limit int) ([]protocol.Event, error) {
	low := model.Bucket(after + 1)
	if last >= 0 && model.Bucket(last) == low {
		it := st.s.Query(`SELECT `+messageColumns+` FROM messages WHERE conv_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?`,
			conv, low, after, limit).WithContext(ctx).Iter()
		out, err := scanMessages(conv, it, nil, &after)
		if err != nil {
			return nil, fmt.Errorf("while reading unread messages: %w", err)
		}
		return out, nil
	}
	var out []protocol.Event
	for {
		buckets, err := st.readBuckets(ctx, "conversation", `SELECT bucket FROM conv_buckets WHERE conv_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?`,
			conv, low, bucketsPerRead)
		if err != nil {
			return nil, err
		}
		for _, b := range buckets {
			it := st.s.Query(`SELECT `+messageColumns+` FROM messages WHERE conv_id = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?`,
				conv, b, after, limit-len(out)).WithContext(ctx).Iter()
			if out, err = scanMessages(conv, it, out, &after); err != nil {
				return nil, fmt.Errorf("while reading unread messages: %w", err)
			}
			if len(out) >= limit {
				return out, nil
			}
		}
		if len(buckets) < bucketsPerRead {
			return out, nil
		}
		low = buckets[len(buckets)-1] + 1
	}
}
