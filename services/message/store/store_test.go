package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

func msg(conv, from, text string, at int64) model.Record {
	return model.Record{V: 1, Kind: protocol.KindMessage, ConvID: conv, From: from, AtMs: at,
		MsgID: fmt.Sprintf("m-%s-%d", from, at), ClientMsgID: fmt.Sprintf("c-%d", at), Type: protocol.TypeText,
		Body: &protocol.Body{Text: text}}
}

func TestPersistAndRead(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	var items []store.Item
	// Offsets straddle a bucket boundary.
	base := model.BucketStart(1) - 3
	for i := int64(0); i < 6; i++ {
		from := "alice"
		if i == 1 || i == 3 {
			from = "bob"
		}
		items = append(items, store.Item{Part: 1, Off: base + i, Rec: msg(conv, from, fmt.Sprint("m", i), 1000+i)})
	}
	items = append(items, store.Item{Part: 1, Off: base + 6, Rec: model.Record{V: 1, Kind: protocol.KindRead, ConvID: conv, From: "bob", AtMs: 2000, RefSeq: base + 4}})
	items = append(items, store.Item{Part: 1, Off: base + 7, Rec: model.Record{V: 1, Kind: protocol.KindRecall, ConvID: conv, From: "alice", AtMs: 2001, RefSeq: base}})
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	// Replaying the same batch changes nothing (and must not resurrect the recalled body).
	if err := st.Persist(ctx, items[:3]); err != nil {
		t.Fatal(err)
	}
	h, more, err := st.History(ctx, conv, 1<<62, 4)
	if err != nil || !more || len(h) != 4 {
		t.Fatalf("history page 1: %d more=%v err=%v", len(h), more, err)
	}
	h2, more, err := st.History(ctx, conv, h[3].Seq, 4)
	if err != nil || more || len(h2) != 2 {
		t.Fatalf("history page 2: %d more=%v err=%v", len(h2), more, err)
	}
	all := append(h, h2...)
	for i, ev := range all {
		if want := base + 5 - int64(i); ev.Seq != want {
			t.Fatalf("history[%d].seq = %d, want %d", i, ev.Seq, want)
		}
	}
	if last := all[5]; !last.Message.Recalled || last.Message.Body != nil {
		t.Fatalf("recalled message still has content: %+v", last.Message)
	}
	// Sync of bob sees all 8 events in order, in pages of 3.
	cur := model.NewSyncCursor(2)
	var got []int64
	for range 10 {
		p, err := st.Sync(ctx, "bob", cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range p.Events {
			got = append(got, ev.Seq)
			if ev.Seq == base && (ev.Message == nil || !ev.Message.Recalled || ev.Message.Body != nil) {
				t.Fatalf("sync shows recalled content: %+v", ev.Message)
			}
		}
		cur = p.Next
		if !p.More {
			break
		}
	}
	if len(got) != 8 {
		t.Fatalf("sync got %v", got)
	}
	for i := range got {
		if got[i] != base+int64(i) {
			t.Fatalf("sync order %v", got)
		}
	}
	c, ok, err := st.Conversation(ctx, "bob", conv)
	if err != nil || !ok || c.ReadSeq != base+4 || c.LastSeq != base+7 || c.LastMsgSeq != base+5 {
		t.Fatalf("bob's conversation: %+v ok=%v err=%v", c, ok, err)
	}
	// Read cursor never moves backwards, whatever the write order.
	if err := st.Persist(ctx, []store.Item{{Part: 1, Off: base + 8, Rec: model.Record{V: 1, Kind: protocol.KindRead, ConvID: conv, From: "bob", AtMs: 2002, RefSeq: base + 1}}}); err != nil {
		t.Fatal(err)
	}
	c, _, _ = st.Conversation(ctx, "bob", conv)
	if c.ReadSeq != base+4 {
		t.Fatalf("read cursor moved backwards to %d", c.ReadSeq)
	}
	u, err := st.Unread(ctx, "bob", model.UnreadCursor{After: -1}, 100)
	if err != nil || len(u.Events) != 1 || u.Events[0].Seq != base+5 {
		t.Fatalf("unread: %+v err=%v", u.Events, err)
	}
}

// msg_ids rows: written with the message, found by a point read, and the
// lowest seq wins whatever the order of writes (a zombie consumer writing
// a later copy's row late, or a replay).
func TestMessageIDRowsLowestSeqWins(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	m := msg(conv, "alice", "x", 1000)
	m.MsgID = model.MessageID("alice", m.ClientMsgID)
	hash := model.ContentHash("bob", m.Type, m.Body)
	later := store.Item{Part: 0, Off: 9, Rec: m, Hash: hash}
	earlier := store.Item{Part: 0, Off: 5, Rec: m, Hash: hash}
	for _, it := range []store.Item{later, earlier, later} {
		if err := st.Persist(ctx, []store.Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	// Many ids at once (several requests): only the stored one is found.
	ids := make([]string, 150)
	for i := range ids {
		ids[i] = model.MessageID("alice", fmt.Sprint("never-sent-", i))
	}
	ids[100] = m.MsgID
	got, err := st.LookupMessageIDs(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[m.MsgID].Seq != 5 || got[m.MsgID].ConvID != conv || !got[m.MsgID].SameContent(hash) || got[m.MsgID].AtMs != 1000 {
		t.Fatalf("lookup = %+v, want only %s at seq 5 with its hash and time", got, m.MsgID)
	}
}

// A rejected send writes only the sender's feed entry (kind rejected); a
// delivered receipt only the peer's.
func TestRejectedAndDeliveredFeedOneUser(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	m := msg(conv, "alice", "other content", 1000)
	del := model.Record{V: 1, Kind: protocol.KindDelivered, ConvID: conv, From: "bob", DeviceID: "phone", AtMs: 1001, RefSeq: 3}
	items := []store.Item{
		{Part: 0, Off: 7, Rec: m, Rejected: true, StoredSeq: 3},
		{Part: 0, Off: 8, Rec: del},
	}
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	feed := func(user string) []protocol.Event {
		p, err := st.Sync(ctx, user, model.NewSyncCursor(1), 100)
		if err != nil {
			t.Fatal(err)
		}
		return p.Events
	}
	a, b := feed("alice"), feed("bob")
	if len(a) != 2 || a[0].Kind != protocol.KindRejected || a[0].RefSeq != 3 || a[0].Message == nil ||
		a[0].Message.Body.Text != "other content" || a[1].Kind != protocol.KindDelivered {
		t.Fatalf("alice's feed %+v: want the rejected send (ref_seq 3, its body) and bob's delivered receipt", a)
	}
	if len(b) != 0 {
		t.Fatalf("bob's feed %+v: want nothing (his own receipt and alice's rejected send are not his)", b)
	}
	if _, ok, err := st.Message(ctx, conv, 7); err != nil || ok {
		t.Fatalf("the rejected send is in history: %v %v", ok, err)
	}
}

// One write may hold the records of several partitions (the pipeline
// batches a fetch's records of every partition it consumes): each user's
// feed is kept per partition, each in its own offset order, also when a
// partition's records straddle a bucket (the ordered write), and the
// conversations and history are those of separate writes.
func TestPersistSpansPartitions(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	ab, ac := model.ConvID("alice", "bob"), model.ConvID("alice", "carol")
	straddle := model.BucketStart(1) - 1 // partition 1's records span two buckets
	// Interleaved, each partition's in offset order.
	items := []store.Item{
		{Part: 1, Off: straddle, Rec: msg(ac, "carol", "c1", 1000)},
		{Part: 0, Off: 10, Rec: msg(ab, "alice", "b1", 1001)},
		{Part: 1, Off: straddle + 1, Rec: msg(ac, "alice", "c2", 1002)},
		{Part: 0, Off: 11, Rec: msg(ab, "bob", "b2", 1003)},
	}
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	sync := func(user string) map[string][]int64 {
		p, err := st.Sync(ctx, user, model.NewSyncCursor(2), 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]int64{}
		for _, ev := range p.Events {
			got[ev.ConvID] = append(got[ev.ConvID], ev.Seq)
		}
		return got
	}
	want := map[string]map[string][]int64{
		"alice": {ab: {10, 11}, ac: {straddle, straddle + 1}},
		"bob":   {ab: {10, 11}},
		"carol": {ac: {straddle, straddle + 1}},
	}
	for user, w := range want {
		if got := sync(user); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("%s's sync %v, want %v", user, got, w)
		}
	}
	for conv, last := range map[string]int64{ab: 11, ac: straddle + 1} {
		c, ok, err := st.Conversation(ctx, "alice", conv)
		if err != nil || !ok || c.LastMsgSeq != last {
			t.Fatalf("alice's conversation %s: %+v ok=%v err=%v, want last message %d", conv, c, ok, err, last)
		}
		h, _, err := st.History(ctx, conv, 1<<62, 10)
		if err != nil || len(h) != 2 || h[0].Seq != last {
			t.Fatalf("history of %s: %+v err=%v", conv, h, err)
		}
	}
}
