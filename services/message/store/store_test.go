package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gocql/gocql"

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

// FindMessage (the pipeline's check of Retry records) finds a message by
// msg_id below a seq and stops at the time bound.
func TestFindMessage(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	var items []store.Item
	// Two buckets; sent_at grows with seq: 1000, 1001, ...
	for i, off := range []int64{5, 6, model.BucketStart(1) + 1, model.BucketStart(1) + 2} {
		items = append(items, store.Item{Part: 0, Off: off, Rec: msg(conv, "alice", "x", 1000+int64(i))})
	}
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return items[i].Rec.MsgID }
	cases := []struct {
		msgID     string
		before    int64
		notBefore int64
		want      int64
	}{
		{id(0), 1 << 40, 0, 5},            // across buckets
		{id(3), 1 << 40, 0, items[3].Off}, // newest
		{id(3), items[3].Off, 0, -1},      // only below before
		{id(0), 1 << 40, 1002, -1},        // stopped by the time bound
		{id(1), 1 << 40, 1001, 6},         // at the bound: still searched
		{"nope", 1 << 40, 0, -1},          // absent
	}
	for i, c := range cases {
		got, err := st.FindMessage(ctx, conv, c.msgID, c.before, c.notBefore)
		if err != nil || got != c.want {
			t.Errorf("case %d: FindMessage = %d %v, want %d", i, got, err, c.want)
		}
	}
}

// A claim made again after its outcome was unknown (a CAS write timeout)
// finds its own row: applied, not a duplicate of itself. Another attempt
// (another msg_id) still gets the existing row.
func TestClaimAgainAfterUnknownOutcome(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	want := store.Idem{MsgID: "m-1", ConvID: model.ConvID("alice", "bob"), Hash: []byte{1}, CreatedMs: 1000}
	for i := range 2 {
		got, applied, err := st.ClaimIdempotency(ctx, "alice", "c-1", want)
		if err != nil || !applied || got.MsgID != want.MsgID {
			t.Fatalf("claim %d of the same attempt: %+v applied=%v %v, want applied", i, got, applied, err)
		}
	}
	other := want
	other.MsgID = "m-2"
	got, applied, err := st.ClaimIdempotency(ctx, "alice", "c-1", other)
	if err != nil || applied || got.MsgID != want.MsgID {
		t.Fatalf("claim of another attempt: %+v applied=%v %v, want the first's row", got, applied, err)
	}
	cases := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("while claiming: %w", &gocql.RequestErrWriteTimeout{WriteType: "CAS"}), true},
		{&gocql.RequestErrCASWriteUnknown{}, true},
		{&gocql.RequestErrUnavailable{}, true},
		{fmt.Errorf("x: %w", gocql.ErrTimeoutNoResponse), true},
		{&gocql.RequestErrWriteFailure{}, false},
		{context.Canceled, false},
	}
	for _, c := range cases {
		if got := store.Uncertain(c.err); got != c.want {
			t.Errorf("uncertain(%T %v) = %v, want %v", c.err, c.err, got, c.want)
		}
	}
}
