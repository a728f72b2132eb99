package store

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/message/model"
)

// The conversation list (GET /v1/conversations): a user's conversations,
// pinned ones first, then by last activity (the newest message time, a
// max-register, so it never decreases), newest first, ties by conv_id;
// with the last message, the read and delivered cursors and the unread
// count.
//
// Order without reading every conversation: conv_activity (migration 5)
// holds one row per (user, hour slot, conversation) that had a message in
// that hour, at_ms its newest message time there. A page walks the index
// newest slot first; the first row of a conversation carries its activity
// (its newest slot), later ones are stale and skipped. Once the walk has
// finished slots holding enough candidates, every conversation whose
// activity lies in a finished slot has been seen and every other one is
// older, so the candidates sorted by activity give the page. A page reads
// the index rows of the slots it covers (its conversations and their stale
// rows of the same hours), the page's conversation rows (one multi-row
// read of one partition) and, for the conversations with unread messages,
// one bounded count each — not the user's whole list.
//
// The unread count: seqs are Kafka offsets shared by every conversation of
// a partition, so last_msg_seq - read_seq is not a count. It is counted at
// read time, only for conversations whose last_msg_seq > read_seq, by one
// range read of the conversation's messages above read_seq (seq only,
// newest first, LIMIT MaxUnreadCount+1), skipping recalled messages and the
// user's own; above MaxUnreadCount it answers MaxUnreadCount with
// unread_more ("99+"). Own messages never count anyway: a send sets the
// sender's read_seq to the message's seq (the pipeline writes both in one
// statement). A pipeline-kept counter (each message's ordinal in its
// conversation, unread = last ordinal - ordinal at the read cursor) would
// make the count exact without the range read, but needs the previous
// ordinal before every write (a read before write on the hot path, per
// conversation and batch, and for groups one ordinal per conversation
// either way), and would count recalled messages; the bounded read costs
// one small query per unread conversation on the page, measured in
// docs/benchmarks.md.
//
// Paging: the cursor is the last key returned (phase, activity, conv_id).
// Within a walk a conversation whose activity does not change appears
// exactly once; one that gets a message during the walk moves to the top,
// ahead of the cursor: it appears at most once (never twice, as its key
// only grows) and may be missing from this walk if it had not been shown
// yet (the device learns of it by the message's push or sync). Pinning or
// unpinning during a walk moves a conversation between the two phases.
//
// Upgrades: a conversation whose last message was stored before migration
// 5 has no index row, last message or activity_ms yet; it joins the list
// with its next message (the conv_id-ordered form, ?after=<conv_id>, lists
// it meanwhile). No backfill is run.
//
// Cost on the write path: per pipeline batch and (user, conversation) with
// a message, one more statement for activity_ms and one index row, both in
// the user's partitions (same replicas, packed with the conversation row);
// the last message's fields ride in the statement that already writes
// last_msg_seq.

// Bounds of the list.
const (
	// MaxUnreadCount caps an unread count ("99+").
	MaxUnreadCount = 99
	// MaxPinned bounds a user's pinned conversations.
	MaxPinned = 50
	// maxActivityScan bounds the index rows one page reads beyond the
	// slot it is in (a page stops at the first slot boundary past it and
	// answers what it has, with a cursor to go on).
	maxActivityScan = 4000
	// unreadScan and unreadBuckets bound the message rows and buckets one
	// unread count reads.
	unreadScan    = 400
	unreadBuckets = 8
	// rowsPerRead bounds the conversation rows of one multi-row read.
	rowsPerRead = 100
	// walkPage is the index rows per request of a walk.
	walkPage = 1000
)

// LastMessage is the newest message of a conversation.
type LastMessage struct {
	Seq      int64  `json:"seq"`
	MsgID    string `json:"msg_id"`
	From     string `json:"from"`
	Type     string `json:"type"`
	Preview  string `json:"preview,omitempty"` // the text (or file name), at most 100 characters
	AtMs     int64  `json:"at_ms"`
	Recalled bool   `json:"recalled,omitempty"`
}

// ConvListEntry is one conversation of the list: the fields of ConvState
// (unchanged) and the list's own.
type ConvListEntry struct {
	ConvState
	Unread      int          `json:"unread"`
	UnreadMore  bool         `json:"unread_more,omitempty"` // more than MaxUnreadCount unread
	LastMessage *LastMessage `json:"last_message,omitempty"`
	ActivityMs  int64        `json:"activity_ms"`
	Pinned      bool         `json:"pinned,omitempty"`
	Muted       bool         `json:"muted,omitempty"`
}

// ListCursor is a position in a user's list: after the conversation with
// key (Pinned, ActivityMs, ConvID). The zero value is the top.
type ListCursor struct {
	Set        bool
	Pinned     bool
	ActivityMs int64
	ConvID     string
}

// ErrBadListCursor wraps every cursor decoding error.
var ErrBadListCursor = errors.New("bad conversation list cursor")

// Encode returns the opaque form of c ("" for the top).
func (c ListCursor) Encode() string {
	if !c.Set {
		return ""
	}
	p := "0"
	if c.Pinned {
		p = "1"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("c1." + p + "." + strconv.FormatInt(c.ActivityMs, 10) + "." + c.ConvID))
}

// DecodeListCursor parses an opaque cursor ("" is the top).
func DecodeListCursor(s string) (ListCursor, error) {
	if s == "" {
		return ListCursor{}, nil
	}
	if len(s) > 400 {
		return ListCursor{}, fmt.Errorf("%w: too long", ErrBadListCursor)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ListCursor{}, fmt.Errorf("%w: not base64url", ErrBadListCursor)
	}
	parts := strings.SplitN(string(raw), ".", 4)
	if len(parts) != 4 || parts[0] != "c1" || (parts[1] != "0" && parts[1] != "1") {
		return ListCursor{}, fmt.Errorf("%w: unknown form", ErrBadListCursor)
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || ms < -1 {
		return ListCursor{}, fmt.Errorf("%w: bad time", ErrBadListCursor)
	}
	if len(parts[3]) > 300 {
		return ListCursor{}, fmt.Errorf("%w: bad conversation id", ErrBadListCursor)
	}
	return ListCursor{Set: true, Pinned: parts[1] == "1", ActivityMs: ms, ConvID: parts[3]}, nil
}

// after reports whether key (ms, id) of the phase comes after the cursor.
func (c ListCursor) after(pinned bool, ms int64, id string) bool {
	if !c.Set {
		return true
	}
	if c.Pinned != pinned {
		return c.Pinned // the unpinned phase follows the pinned one
	}
	if ms != c.ActivityMs {
		return ms < c.ActivityMs
	}
	return id > c.ConvID
}

// ListPage is one page of the list.
type ListPage struct {
	Conversations []ConvListEntry
	Next          ListCursor
	More          bool
}

const convListColumnsCQL = convColumnsCQL + `, last_msg_id, last_from, last_type, last_preview, last_at_ms, last_recalled_seq, activity_ms, muted`

func scanConvListEntry(sc *gocql.Iter) (ConvListEntry, bool) {
	var e ConvListEntry
	var peer, msgID, from, typ, prev *string
	var v [5]*int64
	var lastAt, recalled, act *int64
	var muted *bool
	if !sc.Scan(&e.ConvID, &peer, &v[0], &v[1], &v[2], &v[3], &v[4], &msgID, &from, &typ, &prev, &lastAt, &recalled, &act, &muted) {
		return e, false
	}
	e.Peer = str(peer)
	dst := []*int64{&e.LastSeq, &e.LastMsgSeq, &e.ReadSeq, &e.PeerReadSeq, &e.PeerDeliveredSeq}
	for i, p := range v {
		*dst[i] = -1
		if p != nil {
			*dst[i] = *p
		}
	}
	if msgID != nil && e.LastMsgSeq >= 0 {
		m := &LastMessage{Seq: e.LastMsgSeq, MsgID: *msgID, From: str(from), Type: str(typ), Preview: str(prev)}
		if lastAt != nil {
			m.AtMs = *lastAt
		}
		if recalled != nil && *recalled == e.LastMsgSeq {
			m.Recalled, m.Preview = true, ""
		}
		e.LastMessage = m
	}
	if act != nil {
		e.ActivityMs = *act
	}
	e.Muted = muted != nil && *muted
	return e, true
}

// convRows reads user's rows of ids (any number, rowsPerRead at a time, in
// parallel) by conv_id.
func (st *Store) convRows(ctx context.Context, user string, ids []string) (map[string]ConvListEntry, error) {
	out := make(map[string]ConvListEntry, len(ids))
	var chunks [][]ConvListEntry
	g, gctx := errgroup.WithContext(ctx)
	for ch := range slices.Chunk(ids, rowsPerRead) {
		i := len(chunks)
		chunks = append(chunks, nil)
		g.Go(func() error {
			it := st.s.Query(`SELECT `+convListColumnsCQL+` FROM conversations WHERE user_id = ? AND conv_id IN ?`, user, ch).
				WithContext(gctx).PageSize(rowsPerRead).Iter()
			for {
				e, ok := scanConvListEntry(it)
				if !ok {
					break
				}
				chunks[i] = append(chunks[i], e)
			}
			if err := it.Close(); err != nil {
				return fmt.Errorf("while reading conversations: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, ch := range chunks {
		for _, e := range ch {
			out[e.ConvID] = e
		}
	}
	return out, nil
}

// Pinned returns user's pinned conversation ids (at most MaxPinned + a
// few: pins racing past the bound).
func (st *Store) Pinned(ctx context.Context, user string) ([]string, error) {
	it := st.s.Query(`SELECT conv_id FROM conv_pins WHERE user_id = ? LIMIT ?`, user, 2*MaxPinned).WithContext(ctx).Iter()
	var ids []string
	var id string
	for it.Scan(&id) {
		ids = append(ids, id)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("while reading pins: %w", err)
	}
	return ids, nil
}

// ErrTooManyPinned: the user has MaxPinned pinned conversations already.
var ErrTooManyPinned = errors.New("too many pinned conversations")

// SetConvFlags sets user's pin and mute flags of conv (nil: unchanged).
func (st *Store) SetConvFlags(ctx context.Context, user, conv string, pinned, muted *bool) error {
	now := time.Now()
	if pinned != nil && *pinned {
		ids, err := st.Pinned(ctx, user)
		if err != nil {
			return err
		}
		if len(ids) >= MaxPinned && !slices.Contains(ids, conv) {
			return ErrTooManyPinned
		}
	}
	if pinned != nil {
		var err error
		if *pinned {
			err = st.s.Query(`INSERT INTO conv_pins (user_id, conv_id, pinned_at_ms) VALUES (?, ?, ?)`, user, conv, now.UnixMilli()).WithContext(ctx).Exec()
		} else {
			err = st.s.Query(`DELETE FROM conv_pins WHERE user_id = ? AND conv_id = ?`, user, conv).WithContext(ctx).Exec()
		}
		if err != nil {
			return fmt.Errorf("while writing pin: %w", err)
		}
	}
	if muted != nil {
		if err := st.s.Query(`UPDATE conversations SET muted = ? WHERE user_id = ? AND conv_id = ?`, *muted, user, conv).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("while writing mute: %w", err)
		}
	}
	return nil
}

// ConversationList returns up to limit of user's conversations after cur.
// The pins, the pinned phase and the index walk run at once (the walk
// for a whole page; the pinned conversations then take their places).
func (st *Store) ConversationList(ctx context.Context, user string, cur ListCursor, limit int) (ListPage, error) {
	limit = clampLimit(limit)
	var page ListPage
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var pinned map[string]bool
	var pinnedList []ConvListEntry
	pinsDone := make(chan error, 1)
	go func() {
		pins, err := st.Pinned(ctx, user)
		if err == nil && (!cur.Set || cur.Pinned) && len(pins) > 0 {
			var rows map[string]ConvListEntry
			if rows, err = st.convRows(ctx, user, pins); err == nil {
				for _, e := range rows {
					e.Pinned = true
					if cur.after(true, e.ActivityMs, e.ConvID) {
						pinnedList = append(pinnedList, e)
					}
				}
				sortByKey(pinnedList)
			}
		}
		pinned = make(map[string]bool, len(pins))
		for _, id := range pins {
			pinned[id] = true
		}
		pinsDone <- err
	}()
	var pinsErr error
	pinsRead := false
	awaitPins := func() (map[string]bool, error) {
		if !pinsRead {
			pinsErr, pinsRead = <-pinsDone, true
		}
		return pinned, pinsErr
	}
	rest := cur
	if !cur.Set || cur.Pinned {
		rest = ListCursor{}
	}
	var walked []ConvListEntry
	more, next, err := st.walkActivity(ctx, user, rest, awaitPins, limit, &walked)
	if _, perr := awaitPins(); perr != nil {
		return page, perr
	}
	if err != nil {
		return page, err
	}
	list := pinnedList
	switch {
	case len(list) >= limit:
		// The unpinned phase follows on the next page.
		list, page.More = list[:limit], true
	case len(list)+len(walked) > limit:
		list, page.More = append(list, walked[:limit-len(list)]...), true
	default:
		list, page.More = append(list, walked...), more
		if more && next.Set {
			page.Next = next
		}
	}
	if page.More && !page.Next.Set {
		last := list[len(list)-1]
		page.Next = ListCursor{Set: true, Pinned: last.Pinned, ActivityMs: last.ActivityMs, ConvID: last.ConvID}
	}
	if err := st.unreadCounts(ctx, user, list); err != nil {
		return page, err
	}
	page.Conversations = list
	return page, nil
}

func sortByKey(l []ConvListEntry) {
	slices.SortFunc(l, func(a, b ConvListEntry) int {
		if c := cmp.Compare(b.ActivityMs, a.ActivityMs); c != 0 {
			return c
		}
		return cmp.Compare(a.ConvID, b.ConvID)
	})
}

type candidate struct {
	id string
	at int64
}

// walkActivity appends up to want unpinned conversations after cur (the
// unpinned phase) to *out, in order. It reports whether more may follow
// and, when it stopped at the scan bound with a short page, the cursor to
// go on from (otherwise the caller takes the last entry's key).
func (st *Store) walkActivity(ctx context.Context, user string, cur ListCursor, pins func() (map[string]bool, error), want int, out *[]ConvListEntry) (bool, ListCursor, error) {
	it := &activityRows{ctx: ctx, size: 2*want + 16}
	it.query = func() *gocql.Query {
		return st.s.Query(`SELECT slot, conv_id, at_ms FROM conv_activity WHERE user_id = ?`, user)
	}
	if cur.Set {
		it.query = func() *gocql.Query {
			return st.s.Query(`SELECT slot, conv_id, at_ms FROM conv_activity WHERE user_id = ? AND slot <= ?`, user, cur.ActivityMs/activitySlotMs)
		}
	}
	defer it.close()
	seen := map[string]bool{}
	var done, open []candidate // of finished slots / of the slot being read
	var got []ConvListEntry
	var slot, curSlot int64 = 0, -1
	var id string
	var at int64
	scanned := 0
	// settle takes candidates of finished slots (all at or above slot
	// lowest) in key order until want are valid, checking each against its
	// row: a row whose activity is newer than the index row is a stale
	// index row (the conversation moved ahead; its newest row was seen
	// above, or is not written yet).
	settle := func() error {
		slices.SortFunc(done, func(a, b candidate) int {
			if c := cmp.Compare(b.at, a.at); c != 0 {
				return c
			}
			return cmp.Compare(a.id, b.id)
		})
		for len(done) > 0 && len(got) < want {
			n := min(len(done), want-len(got))
			batch := done[:n]
			done = done[n:]
			ids := make([]string, len(batch))
			for i, c := range batch {
				ids[i] = c.id
			}
			rows, err := st.convRows(ctx, user, ids)
			if err != nil {
				return err
			}
			pinned, err := pins()
			if err != nil {
				return err
			}
			for _, c := range batch {
				e, ok := rows[c.id]
				if !ok || e.ActivityMs > c.at || pinned[c.id] {
					continue
				}
				e.ActivityMs = c.at
				got = append(got, e)
			}
		}
		return nil
	}
	exhausted := true
	for it.scan(&slot, &id, &at) {
		if slot != curSlot {
			// curSlot is finished.
			done = append(done, open...)
			open = open[:0]
			if len(done)+len(got) >= want {
				if err := settle(); err != nil {
					return false, ListCursor{}, err
				}
				if len(got) >= want {
					exhausted = false
					break
				}
			}
			if scanned >= maxActivityScan && curSlot >= 0 {
				// Answer the finished slots; go on below them.
				if err := settle(); err != nil {
					return false, ListCursor{}, err
				}
				sortByKey(got)
				*out = append(*out, got...)
				return true, ListCursor{Set: true, ActivityMs: curSlot*activitySlotMs - 1}, nil
			}
			curSlot = slot
		}
		scanned++
		if seen[id] {
			continue
		}
		seen[id] = true
		if !cur.after(false, at, id) {
			continue
		}
		open = append(open, candidate{id, at})
	}
	if err := it.close(); err != nil {
		return false, ListCursor{}, fmt.Errorf("while reading conversation activity: %w", err)
	}
	if exhausted {
		done = append(done, open...)
		if err := settle(); err != nil {
			return false, ListCursor{}, err
		}
	}
	sortByKey(got)
	more := !exhausted || len(done) > 0
	if len(got) > want {
		got, more = got[:want], true
	}
	*out = append(*out, got...)
	return more, ListCursor{}, nil
}

// activityRows reads index rows page by page: a first page of about what
// the walk needs when activity is spread over slots, then walkPage rows a
// page when a slot holds many conversations.
type activityRows struct {
	ctx   context.Context
	query func() *gocql.Query
	size  int
	state []byte
	it    *gocql.Iter
	done  bool
	err   error
}

func (a *activityRows) scan(slot *int64, id *string, at *int64) bool {
	for {
		if a.it == nil {
			if a.done {
				return false
			}
			a.it = a.query().WithContext(a.ctx).PageSize(a.size).PageState(a.state).Iter()
		}
		if a.it.Scan(slot, id, at) {
			return true
		}
		a.state = a.it.PageState()
		a.err = a.it.Close()
		a.it = nil
		if a.err != nil || len(a.state) == 0 {
			a.done = true
			return false
		}
		a.size = walkPage
	}
}

func (a *activityRows) close() error {
	if a.it != nil {
		_ = a.it.Close()
		a.it = nil
	}
	return a.err
}

// unreadCounts fills in the unread counts of the entries whose last
// message is after their read cursor, in parallel.
func (st *Store) unreadCounts(ctx context.Context, user string, list []ConvListEntry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(MaxPage) // one page: bounded
	single := func(e *ConvListEntry) {
		g.Go(func() error {
			n, more, err := st.countUnread(gctx, user, e.ConvID, e.ReadSeq, e.LastMsgSeq)
			e.Unread, e.UnreadMore = n, more
			return err
		})
	}
	// 1:1 conversations whose unread messages lie in one bucket are
	// counted together, one multi-partition read per bucket.
	byBucket := map[int32][]*ConvListEntry{}
	for i := range list {
		e := &list[i]
		if e.LastMsgSeq <= e.ReadSeq || e.LastMsgSeq < 0 {
			continue
		}
		b := model.Bucket(e.LastMsgSeq)
		if model.IsGroupConv(e.ConvID) || model.Bucket(e.ReadSeq+1) != b {
			single(e)
			continue
		}
		byBucket[b] = append(byBucket[b], e)
	}
	for b, es := range byBucket {
		if len(es) == 1 {
			single(es[0])
			continue
		}
		for ch := range slices.Chunk(es, countsPerRead) {
			g.Go(func() error {
				redo, err := st.countUnreadBucket(gctx, user, b, ch)
				for _, e := range redo {
					single(e)
				}
				return err
			})
		}
	}
	return g.Wait()
}

// countsPerRead bounds the conversations of one multi-partition count, and
// bucketRowsPerConv the rows it reads of each.
const (
	countsPerRead     = 25
	bucketRowsPerConv = 128
)

// countUnreadBucket counts the unread messages of es (1:1 conversations
// whose unread messages all lie in bucket b) in one read: every
// partition's newest rows down to the lowest read cursor among them. A
// conversation whose rows ran out before its own cursor is returned in
// redo (counted alone).
func (st *Store) countUnreadBucket(ctx context.Context, user string, b int32, es []*ConvListEntry) ([]*ConvListEntry, error) {
	ids := make([]string, len(es))
	from := int64(math.MaxInt64)
	byID := make(map[string]*ConvListEntry, len(es))
	for i, e := range es {
		ids[i] = e.ConvID
		from = min(from, e.ReadSeq+1)
		byID[e.ConvID] = e
	}
	it := st.s.Query(`SELECT conv_id, seq, from_user, recalled, msg_id, type FROM messages WHERE conv_id IN ? AND bucket = ? AND seq >= ? PER PARTITION LIMIT ?`,
		ids, b, from, bucketRowsPerConv).WithContext(ctx).PageSize(len(es) * bucketRowsPerConv).Iter()
	rows := map[string]int{}
	lowest := map[string]int64{}
	var conv string
	var seq int64
	var sender, msgID, typ *string
	var recalled *bool
	for it.Scan(&conv, &seq, &sender, &recalled, &msgID, &typ) {
		e := byID[conv]
		if e == nil {
			continue
		}
		rows[conv]++
		lowest[conv] = seq
		if seq <= e.ReadSeq || seq > e.LastMsgSeq || e.UnreadMore {
			continue
		}
		if str(msgID) == "" || (recalled != nil && *recalled) || str(sender) == user || str(typ) == groupEventType {
			continue
		}
		if e.Unread == MaxUnreadCount {
			e.UnreadMore = true
			continue
		}
		e.Unread++
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("while counting unread: %w", err)
	}
	var redo []*ConvListEntry
	for _, e := range es {
		// All rows down to its cursor were read unless the partition
		// limit cut them off above it.
		if !e.UnreadMore && rows[e.ConvID] == bucketRowsPerConv && lowest[e.ConvID] > e.ReadSeq+1 {
			e.Unread = 0
			redo = append(redo, e)
		}
	}
	return redo, nil
}

// countUnread counts the messages of conv in (read, last] that are not
// recalled and not user's own, up to MaxUnreadCount (more: there are more,
// or more than unreadScan rows or unreadBuckets buckets had to be read).
func (st *Store) countUnread(ctx context.Context, user, conv string, read, last int64) (int, bool, error) {
	from := read + 1
	if model.IsGroupConv(conv) {
		// A member's unread messages start at their (last) join: the
		// group's history before it is not theirs to read.
		joined, err := st.joinedSeq(ctx, conv, user)
		if err != nil {
			return 0, false, err
		}
		from = max(from, joined)
		if from > last {
			return 0, false, nil
		}
	}
	buckets := []int32{model.Bucket(last)}
	if model.Bucket(from) != buckets[0] {
		var err error
		buckets, err = st.readBuckets(ctx, "unread", `SELECT bucket FROM conv_buckets WHERE conv_id = ? AND bucket <= ? AND bucket >= ? LIMIT ?`,
			conv, model.Bucket(last), model.Bucket(from), unreadBuckets+1)
		if err != nil {
			return 0, false, err
		}
	}
	n, scanned := 0, 0
	for i, b := range buckets {
		if i == unreadBuckets {
			return min(n, MaxUnreadCount), true, nil
		}
		it := st.s.Query(`SELECT seq, from_user, recalled, msg_id, type FROM messages WHERE conv_id = ? AND bucket = ? AND seq >= ? AND seq <= ? LIMIT ?`,
			conv, b, from, last, unreadScan-scanned).WithContext(ctx).PageSize(bucketRowsPerConv).Iter()
		var seq int64
		var sender, msgID, typ *string
		var recalled *bool
		for it.Scan(&seq, &sender, &recalled, &msgID, &typ) {
			scanned++
			// Not counted: recalls of never-stored messages (no msg_id),
			// recalled messages, the user's own, group membership notices.
			if str(msgID) == "" || (recalled != nil && *recalled) || str(sender) == user || str(typ) == groupEventType {
				continue
			}
			n++
			if n > MaxUnreadCount {
				_ = it.Close()
				return MaxUnreadCount, true, nil
			}
		}
		if err := it.Close(); err != nil {
			return 0, false, fmt.Errorf("while counting unread: %w", err)
		}
		if scanned >= unreadScan {
			return min(n, MaxUnreadCount), true, nil
		}
	}
	return n, false, nil
}

// joinedSeq returns the seq of user's last join of the group conversation
// conv (0 when unknown: then the read cursor alone bounds the count).
func (st *Store) joinedSeq(ctx context.Context, conv, user string) (int64, error) {
	group, err := model.ParseGroupConv(conv)
	if err != nil {
		return 0, nil
	}
	var joined *int64
	err = st.s.Query(`SELECT joined_seq FROM group_members WHERE group_id = ? AND user_id = ?`, group, user).WithContext(ctx).Scan(&joined)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && joined == nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("while reading group membership: %w", err)
	}
	return *joined, nil
}
