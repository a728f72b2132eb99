package store

import (
	"unicode/utf8"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// The conversation list's part of the write path (the pipeline, Persist):
// each user's conversation row carries its last message and the highest
// recalled seq, and the recency index conv_activity gets the conversation's
// newest message time per hour slot. See convlist.go for the reads.

// activitySlotMs is the width of a conv_activity slot (one hour).
const activitySlotMs = 3_600_000

// maxPreviewRunes bounds the text preview stored with the last message.
const maxPreviewRunes = 100

// lastMsg is the newest message of a conversation in one pipeline batch.
type lastMsg struct {
	seq   int64
	msgID string
	from  string
	typ   string
	prev  string
	atMs  int64
	actMs int64 // the newest message time of the batch (the recency index)
}

// noteMessage records the message at seq as c's last message if it is the
// newest of the batch so far.
func (c *convUpdate) noteMessage(seq int64, r *model.Record) {
	if c.last != nil && c.last.seq >= seq {
		c.last.actMs = max(c.last.actMs, r.AtMs)
		return
	}
	act := r.AtMs
	if c.last != nil {
		act = max(act, c.last.actMs)
	}
	c.last = &lastMsg{seq: seq, msgID: r.MsgID, from: r.From, typ: string(r.Type), prev: preview(r.Body), atMs: r.AtMs, actMs: act}
}

// preview is the text shown for a message in the list: its text, else the
// file name, cut to maxPreviewRunes.
func preview(b *protocol.Body) string {
	if b == nil {
		return ""
	}
	s := b.Text
	if s == "" {
		s = b.Name
	}
	if utf8.RuneCountInString(s) <= maxPreviewRunes {
		return s
	}
	n := 0
	for i := range s {
		if n == maxPreviewRunes {
			return s[:i]
		}
		n++
	}
	return s
}

// convListSets returns the extra SET clauses (and their arguments) of the
// conversations statement that writes the registers of value v: the last
// message's fields ride with last_msg_seq (same timestamp), and a recall of
// the seq v nulls the preview at that timestamp (a deletion wins a tie, so
// it removes the preview of message v and never a newer message's).
func (c *convUpdate) convListSets(v int64) (string, []any) {
	recalled := c.val[colLastRecalled] == v
	if c.last != nil && c.last.seq == v && c.val[colLastMsg] == v {
		var prev any = c.last.prev
		if recalled {
			prev = nil
		}
		return ", last_msg_id = ?, last_from = ?, last_type = ?, last_at_ms = ?, last_preview = ?",
			[]any{c.last.msgID, c.last.from, c.last.typ, c.last.atMs, prev}
	}
	if recalled {
		return ", last_preview = null", nil
	}
	return "", nil
}

// activityStmts returns the writes of c's activity time (the newest
// message time of the batch), both max-registers written USING TIMESTAMP
// at_ms + 1: the conversations row's activity_ms (a conversation's list
// key; it never decreases) and the recency index row of its hour slot.
// Both partitions have the user as key, so they go to the same replicas.
func (c *convUpdate) activityStmts(user, convID string) []stmt {
	if c.last == nil || c.last.actMs <= 0 {
		return nil
	}
	a := c.last.actMs
	return []stmt{
		{`UPDATE conversations USING TIMESTAMP ? SET activity_ms = ? WHERE user_id = ? AND conv_id = ?`,
			[]any{a + 1, a, user, convID}, 64},
		{`INSERT INTO conv_activity (user_id, slot, conv_id, at_ms) VALUES (?, ?, ?, ?) USING TIMESTAMP ?`,
			[]any{user, a / activitySlotMs, convID, a, a + 1}, 64},
	}
}
