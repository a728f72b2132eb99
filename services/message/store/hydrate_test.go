package store_test

import (
	"context"
	"testing"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestGroupFeedReferences: a group message's feed entry holds no content
// (no msg_id, no body: the group's history row has them once), and Sync
// fills it in from that row — body, mentions, ids — and shows a recall
// that only marked the history row.
func TestGroupFeedReferences(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.GroupConvID("team")
	members := []string{"ann", "bo", "cy"}
	gmsg := func(off int64, text string, mentions ...string) store.Item {
		r := msg(conv, "ann", text, 1000+off)
		r.Body.Mentions = mentions
		return store.Item{Part: 1, Off: off, Rec: r, Members: members}
	}
	items := []store.Item{gmsg(10, "hi bo", "bo"), gmsg(11, "second"), gmsg(12, "recall me")}
	items = append(items, store.Item{Part: 1, Off: 13, Members: members,
		Rec: model.Record{V: 1, Kind: protocol.KindRecall, ConvID: conv, From: "ann", AtMs: 2000, RefSeq: 12}})
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{10, 11} {
		id, body, err := store.FeedContent(ctx, st, "bo", 1, off)
		if err != nil {
			t.Fatal(err)
		}
		if id != nil || body != nil {
			t.Fatalf("bo's feed entry at %d carries content (msg_id %v, body %v): a group message's entry is a reference", off, id, body)
		}
	}
	page, err := st.Sync(ctx, "bo", model.SyncCursor{Next: []int64{0, 0}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 4 {
		t.Fatalf("bo's sync: %d events, want 4", len(page.Events))
	}
	for i, ev := range page.Events[:3] {
		want := items[i].Rec
		m := ev.Message
		if ev.Kind != protocol.KindMessage || ev.Seq != items[i].Off || m == nil || m.MsgID != want.MsgID || m.ClientMsgID != want.ClientMsgID || m.From != "ann" {
			t.Fatalf("event %d: %+v %+v, want message %s at %d", i, ev, m, want.MsgID, items[i].Off)
		}
		if i < 2 && (m.Body == nil || m.Body.Text != want.Body.Text || len(m.Body.Mentions) != len(want.Body.Mentions)) {
			t.Fatalf("event %d body %+v, want %+v", i, m.Body, want.Body)
		}
	}
	if m := page.Events[2].Message; !m.Recalled || m.Body != nil {
		t.Fatalf("recalled message in sync: %+v", m)
	}
	if ev := page.Events[3]; ev.Kind != protocol.KindRecall || ev.RefSeq != 12 {
		t.Fatalf("recall event %+v", ev)
	}
}
