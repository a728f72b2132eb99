package webhook

import (
	"context"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/webhook/wire"
)

// GroupMembers gives the members of a group at a seq (the message
// process's store: every group record travels the log, and member rows
// carry the seqs of their join and leave, so membership at a record's seq
// can be read back even after later changes). Safe for concurrent use.
type GroupMembers interface {
	MembersAt(ctx context.Context, group string, seq int64) ([]string, error)
}

// groupMessageEvents are a group message's events: after_send once, and
// offline_message for every member other than the sender with no connected
// device (ID <msg_id>:offline_message:<user>). A message whose sender was
// not a member at its seq gets none: the pipeline rejects it. When the
// members cannot be read, after_send still goes out and offline_message
// does not (best effort, like presence itself; logged).
func (d *Dispatcher) groupMessageEvents(ctx context.Context, rec *model.Record, off int64) []*wire.Event {
	msg := rec.Event(off).Message
	base := wire.Event{Type: config.WebhookAfterSend, ID: rec.MsgID + ":" + config.WebhookAfterSend, AtMs: rec.AtMs,
		ConvID: rec.ConvID, Seq: off, From: rec.From, Message: msg}
	gid, _ := model.ParseGroupConv(rec.ConvID) // validated by Decode
	members, err := d.Groups.MembersAt(ctx, gid, off)
	if err != nil {
		d.Log.Warn("webhook: group members unreadable; no offline_message for this message", "conv", rec.ConvID, "seq", off, "err", err)
		return []*wire.Event{&base}
	}
	sender := false
	for _, u := range members {
		sender = sender || u == rec.From
	}
	if !sender {
		return nil
	}
	evs := []*wire.Event{&base}
	if d.Directory == nil || !d.Hook.Wants(config.WebhookOfflineMessage) {
		return evs
	}
	for _, u := range members {
		if u == rec.From || len(d.Directory.Sessions(u)) > 0 {
			continue
		}
		ev := base
		ev.Type, ev.ID, ev.UserID = config.WebhookOfflineMessage, rec.MsgID+":"+config.WebhookOfflineMessage+":"+u, u
		evs = append(evs, &ev)
	}
	return evs
}
