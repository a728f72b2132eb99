package store

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// Statements of group records: every column is written at the record's
// timestamp (seq + 1), like everything else Persist writes.
const (
	cqlGroupCreate = `UPDATE groups USING TIMESTAMP ? SET name = ?, avatar = ?, attrs = ?, owner = ?, created_ms = ?, created_seq = ? WHERE group_id = ?`
	cqlGroupName   = `UPDATE groups USING TIMESTAMP ? SET name = ? WHERE group_id = ?`
	cqlGroupAvatar = `UPDATE groups USING TIMESTAMP ? SET avatar = ? WHERE group_id = ?`
	cqlGroupAttrs  = `UPDATE groups USING TIMESTAMP ? SET attrs = ? WHERE group_id = ?`
	cqlGroupOwner  = `UPDATE groups USING TIMESTAMP ? SET owner = ? WHERE group_id = ?`
	cqlGroupEnd    = `UPDATE groups USING TIMESTAMP ? SET dissolved_seq = ? WHERE group_id = ?`
	cqlMemberRole  = `UPDATE group_members USING TIMESTAMP ? SET role = ? WHERE group_id = ? AND user_id = ?`
	cqlMemberJoin  = `UPDATE group_members USING TIMESTAMP ? SET joined_seq = ? WHERE group_id = ? AND user_id = ?`
	cqlMemberLeave = `UPDATE group_members USING TIMESTAMP ? SET left_seq = ? WHERE group_id = ? AND user_id = ?`
	cqlUserJoin    = `UPDATE user_groups USING TIMESTAMP ? SET joined_seq = ? WHERE user_id = ? AND group_id = ?`
	cqlUserLeave   = `UPDATE user_groups USING TIMESTAMP ? SET left_seq = ? WHERE user_id = ? AND group_id = ?`
	// A group change is stored in the group's messages (type "group", body
	// the change) so history shows membership in order with the messages.
	cqlInsertGroupEvent = `INSERT INTO messages (conv_id, bucket, seq, msg_id, from_user, device_id, type, body, sent_at_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?`
)

// groupEventType marks a group change's row in the messages table.
const groupEventType = "group"

// groupEventMsgID is the msg_id of a group change's messages row (history
// skips rows without one).
func groupEventMsgID(seq int64) string { return fmt.Sprintf("group-%d", seq) }

func groupChangeJSON(c *protocol.GroupChange) (string, int) {
	if c == nil {
		return "", 0
	}
	enc, _ := json.Marshal(c)
	return string(enc), len(enc)
}

// groupWork builds the statements of one group record: its message or
// event row, every member's feed entry and conversation row (write
// diffusion), recalls, and the group tables.
type groupWork struct {
	st      *Store
	it      *Item
	part    int32
	b       int32
	body    string
	bodyLen int
	index   bool // the members' rows are written (StageIndex)
	feed    func(u string, kind protocol.Kind, ref int64)
	conv    func(u string) *convUpdate
	set     func(c *convUpdate, col int, v int64)

	msgRows     map[string][]stmt // one partition: the message row
	single      []stmt            // statements of one partition each
	msgRecalls  []stmt            // the history row's recall cells
	feedRecalls []stmt            // the members' feed entries' recall cells
}

func (w *groupWork) build() {
	r, off := &w.it.Rec, w.it.Off
	ts := off + 1
	w.msgRows = map[string][]stmt{}
	msgKey := fmt.Sprintf("%s\x00%d", r.ConvID, w.b)
	switch r.Kind {
	case protocol.KindMessage:
		w.msgRows[msgKey] = []stmt{{cqlInsertMessage, []any{
			r.ConvID, w.b, off, r.MsgID, r.ClientMsgID, r.From, nullable(r.DeviceID), string(r.Type), w.body, r.AtMs, ts}, 200 + w.bodyLen}}
		w.single = append(w.single, stmt{cqlInsertMsgID, []any{r.MsgID, r.ConvID, off, w.it.Hash, r.AtMs, msgIDTimestamp(off)}, 64})
		w.fanOut(r)
		w.set(w.conv(r.From), colRead, off) // sending implies having read
	case protocol.KindRead:
		// The reader's devices only: members do not see each other's reads.
		w.feed(r.From, r.Kind, r.RefSeq)
		c := w.conv(r.From)
		w.set(c, colLast, off)
		w.set(c, colRead, r.RefSeq)
	case protocol.KindRecall:
		rb := model.Bucket(r.RefSeq)
		w.msgRecalls = append(w.msgRecalls, stmt{cqlRecallMessage, []any{ts, r.ConvID, rb, r.RefSeq}, 64})
		if !w.index {
			return
		}
		for _, u := range w.it.Members {
			w.feed(u, r.Kind, r.RefSeq)
			c := w.conv(u)
			w.set(c, colLast, off)
			w.set(c, colLastRecalled, r.RefSeq)
			w.feedRecalls = append(w.feedRecalls, stmt{cqlRecallFeed, []any{ts, w.st.ret.ttl, u, w.part, rb, r.RefSeq}, 64})
		}
	case protocol.KindGroup:
		w.msgRows[msgKey] = []stmt{{cqlInsertGroupEvent, []any{
			r.ConvID, w.b, off, groupEventMsgID(off), r.From, nullable(r.DeviceID), groupEventType, w.body, r.AtMs, ts}, 200 + w.bodyLen}}
		// The change is the list's last message, previewed as a sentence.
		note := &model.Record{MsgID: groupEventMsgID(off), From: r.From, Type: groupEventType, AtMs: r.AtMs,
			Body: &protocol.Body{Text: describeChange(r.From, r.Group)}}
		w.fanOut(note)
		if op := r.Group.Op; op == protocol.GroupCreated || op == protocol.GroupJoined {
			// A member's read cursor starts just before their join: the
			// unread pull and count never reach back into the group's
			// earlier history (a max-register, so a rejoin moves it on).
			for u := range w.it.Roles {
				w.set(w.conv(u), colRead, off-1)
			}
		}
		w.groupTables()
	}
}

// fanOut writes a message's or change's entry in every member's feed and
// conversation row (write diffusion), note being the conversation list's
// last message.
func (w *groupWork) fanOut(note *model.Record) {
	if !w.index {
		return
	}
	off := w.it.Off
	for _, u := range w.it.Members {
		w.feed(u, w.it.Rec.Kind, 0)
		c := w.conv(u)
		w.set(c, colLast, off)
		w.set(c, colLastMsg, off)
		c.noteMessage(off, note)
	}
}

// groupTables writes the group's row and member rows a change sets.
func (w *groupWork) groupTables() {
	r, off := &w.it.Rec, w.it.Off
	ts := off + 1
	gid, _ := model.ParseGroupConv(r.ConvID)
	c := r.Group
	add := func(cql string, args ...any) { w.single = append(w.single, stmt{cql, args, 128}) }
	switch c.Op {
	case protocol.GroupCreated:
		add(cqlGroupCreate, ts, *c.Name, nullable(str(c.Avatar)), c.Attrs, r.From, r.AtMs, off, gid)
	case protocol.GroupUpdated:
		if c.Name != nil {
			add(cqlGroupName, ts, *c.Name, gid)
		}
		if c.Avatar != nil {
			add(cqlGroupAvatar, ts, nullable(*c.Avatar), gid)
		}
		if c.Attrs != nil {
			add(cqlGroupAttrs, ts, c.Attrs, gid)
		}
	case protocol.GroupDissolved:
		add(cqlGroupEnd, ts, off, gid)
	}
	joins := c.Op == protocol.GroupCreated || c.Op == protocol.GroupJoined
	for u, role := range w.it.Roles {
		add(cqlMemberRole, ts, string(role), gid, u)
		if role == protocol.RoleOwner {
			add(cqlGroupOwner, ts, u, gid)
		}
		if joins {
			add(cqlMemberJoin, ts, off, gid, u)
			add(cqlUserJoin, ts, off, u, gid)
		}
	}
	for _, u := range w.it.Left {
		add(cqlMemberLeave, ts, off, gid, u)
		add(cqlUserLeave, ts, off, u, gid)
	}
}

// groupEvent decodes a group change's stored row.
func groupEvent(conv string, seq int64, from, dev string, body *string, at *int64) protocol.Event {
	ev := protocol.Event{Kind: protocol.KindGroup, ConvID: conv, Seq: seq, From: from, DeviceID: dev, Group: &protocol.GroupChange{}}
	if body != nil {
		_ = json.Unmarshal([]byte(*body), ev.Group) // written by groupChangeJSON
	}
	if at != nil {
		ev.AtMs = *at
	}
	return ev
}

// describeChange is a group change as a short sentence (the conversation
// list's preview of it).
func describeChange(from string, c *protocol.GroupChange) string {
	users := strings.Join(c.Users, ", ")
	switch c.Op {
	case protocol.GroupCreated:
		return from + " created the group"
	case protocol.GroupJoined:
		return from + " added " + users
	case protocol.GroupRemoved:
		return from + " removed " + users
	case protocol.GroupLeft:
		return from + " left"
	case protocol.GroupRole:
		return from + " made " + users + " " + string(c.Role)
	case protocol.GroupDissolved:
		return from + " dissolved the group"
	}
	return from + " updated the group"
}
