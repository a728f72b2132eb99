package message_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

// A device that kept its cursor across a wiped (or restored, or re-created)
// log holds positions beyond the new log's ends: sync answers 410
// cursor_expired saying so, instead of a silent empty page that would hide
// every new message; the resync (unread pull, then sync from its
// sync_cursor) brings them. Good cursors — at the log end, or issued by
// this tier — keep working.
func TestSyncCursorAheadOfLog(t *testing.T) {
	// The old world: bob's device syncs 30 messages and keeps the cursor.
	old := newEnv(t, 4)
	old.start(t, server.RoleAll)
	for i := range 30 {
		old.send(t, "alice", text("bob", fmt.Sprint("old-", i), "x"))
	}
	conv := model.ConvID("alice", "bob")
	old.waitPersisted(t, conv, 30)
	evs, oldCursor := old.syncAll(t, "bob", "", 100)
	if len(evs) < 30 {
		t.Fatalf("old world: synced %d events, want at least 30", len(evs))
	}

	// The new world: same partition count, offsets restarted.
	e := newEnv(t, 4)
	e.start(t, server.RoleAll)
	var want []string
	for i := range 3 {
		want = append(want, e.send(t, "alice", text("bob", fmt.Sprint("new-", i), "x")).MsgID)
	}
	e.waitPersisted(t, conv, 3)

	sync := func(cursor string) msgtest.Resp {
		return e.c.Do(t, "GET", "/v1/sync?cursor="+url.QueryEscape(cursor), e.user(t, "bob"), nil)
	}
	// The old cursor is ahead of the log: 410, whatever the cache held.
	for range 2 {
		r := sync(oldCursor)
		if r.Status != 410 || r.Code() != protocol.ErrCursorExpired {
			t.Fatalf("sync from the old world's cursor: %d %s, want 410 %s", r.Status, r.Body, protocol.ErrCursorExpired)
		}
		if !strings.Contains(string(r.Body), "ahead of the log") {
			t.Fatalf("cursor_expired message does not say the cursor is ahead of the log: %s", r.Body)
		}
	}

	// One position past the log end of a single partition is enough.
	ends := msgtest.LogEnds(t, e.cfg)
	atEnd := model.SyncCursor{Next: ends}.Encode()
	if p := e.syncPage(t, "bob", atEnd, 100); len(p.Events) != 0 || p.HasMore {
		t.Fatalf("sync from the log end: %d events, has_more %v; want an empty last page", len(p.Events), p.HasMore)
	}
	for part := range ends {
		beyond := append([]int64(nil), ends...)
		beyond[part]++
		if r := sync(model.SyncCursor{Next: beyond}.Encode()); r.Status != 410 || r.Code() != protocol.ErrCursorExpired {
			t.Fatalf("cursor one past the end of partition %d: %d %s, want 410", part, r.Status, r.Body)
		}
	}

	// The resync of docs/protocol.md: unread pull, then sync from its
	// first page's sync_cursor — which this tier issued and accepts.
	r := e.c.Do(t, "GET", "/v1/unread", e.user(t, "bob"), nil)
	if r.Status != 200 {
		t.Fatalf("unread: %d %s", r.Status, r.Body)
	}
	var u api.UnreadResponse
	r.Decode(t, &u)
	got := map[string]bool{}
	for _, ev := range u.Events {
		got[ev.Message.MsgID] = true
	}
	for _, id := range want {
		if !got[id] {
			t.Fatalf("resync missed %s", id)
		}
	}
	_, cursor := e.syncAll(t, "bob", u.SyncCursor, 100)

	// That cursor keeps working as the log grows.
	late := e.send(t, "alice", text("bob", "late", "x")).MsgID
	e.waitPersisted(t, conv, 4)
	evs, _ = e.syncAll(t, "bob", cursor, 100)
	found := false
	for _, ev := range evs {
		found = found || (ev.Kind == protocol.KindMessage && ev.Message.MsgID == late)
	}
	if !found {
		t.Fatalf("sync from the resynced cursor missed the message sent after it (%d events)", len(evs))
	}
}
