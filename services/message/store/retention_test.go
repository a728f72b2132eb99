package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// feedTTLs returns TTL(kind) and TTL(recalled) of user's feed rows of part
// (bucket 0), by offset; -1 for no TTL.
func feedTTLs(t *testing.T, st *store.Store, user string, part int32) map[int64][2]int {
	t.Helper()
	it := st.Session().Query(`SELECT off, TTL(kind), TTL(recalled) FROM feed WHERE user_id = ? AND part = ? AND bucket = 0`, user, part).Iter()
	out := map[int64][2]int{}
	var off int64
	var k, r *int
	for it.Scan(&off, &k, &r) {
		v := [2]int{-1, -1}
		if k != nil {
			v[0] = *k
		}
		if r != nil {
			v[1] = *r
		}
		out[off] = v
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Feed rows, and the recall cells updating them, are written with the
// retention as TTL; history rows are not.
func TestFeedRowsGetRetentionTTL(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	cfg.FeedRetention = 48 * time.Hour
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	items := []store.Item{
		{Part: 0, Off: 1, Rec: msg(conv, "alice", "a", 1000)},
		{Part: 0, Off: 2, Rec: model.Record{V: 1, Kind: protocol.KindRecall, ConvID: conv, From: "alice", AtMs: 1001, RefSeq: 1}},
	}
	if err := st.Persist(ctx, items); err != nil {
		t.Fatal(err)
	}
	want := int((48 * time.Hour).Seconds())
	for _, u := range []string{"alice", "bob"} {
		ttls := feedTTLs(t, st, u, 0)
		if len(ttls) != 2 {
			t.Fatalf("%s: feed rows %v", u, ttls)
		}
		for off, v := range ttls {
			if v[0] <= want-60 || v[0] > want {
				t.Errorf("%s off %d: TTL(kind) = %d, want about %d", u, off, v[0], want)
			}
		}
		if r := ttls[1][1]; r <= want-60 || r > want {
			t.Errorf("%s: TTL(recalled) of the recalled row = %d, want about %d", u, r, want)
		}
	}
	var ttl *int
	if err := st.Session().Query(`SELECT TTL(msg_id) FROM messages WHERE conv_id = ? AND bucket = 0 AND seq = 1`, conv).Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	if ttl != nil {
		t.Fatalf("history row has TTL %d, want none", *ttl)
	}
}

// A cursor older than the retention gets ErrCursorExpired at the latest
// when the rows it has not seen are gone (never a silent gap); a fresh
// cursor keeps working and sees every event once.
func TestSyncCursorExpires(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	// Every step before the expiry must happen within the retention (less
	// its margin) of the cursor it uses — the first sync's horizon is the
	// migration — so a retention of a few seconds fails on a loaded box.
	cfg.FeedRetention = 15 * time.Second
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	off := int64(0)
	batch := func(n int) []int64 {
		var items []store.Item
		var offs []int64
		for range n {
			off++
			items = append(items, store.Item{Part: 1, Off: off, Rec: msg(conv, "alice", fmt.Sprint("m", off), 1000+off)})
			offs = append(offs, off)
		}
		if err := st.Persist(ctx, items); err != nil {
			t.Fatal(err)
		}
		return offs
	}
	syncAll := func(cur model.SyncCursor) ([]int64, model.SyncCursor, error) {
		var got []int64
		for range 20 {
			p, err := st.Sync(ctx, "bob", cur, 2)
			if err != nil {
				return got, cur, err
			}
			for _, ev := range p.Events {
				got = append(got, ev.Seq)
			}
			cur = p.Next
			if !p.More {
				return got, cur, nil
			}
		}
		t.Fatal("sync did not end")
		return nil, cur, nil
	}
	first := batch(3)
	got, c1, err := syncAll(model.NewSyncCursor(2))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(first) {
		t.Fatalf("first sync: %v %v, want %v", got, err, first)
	}
	if c1.SinceMs == 0 {
		t.Fatal("cursor has no horizon")
	}
	second := batch(2)
	got, c2, err := syncAll(c1)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(second) {
		t.Fatalf("fresh cursor: %v %v, want %v", got, err, second)
	}
	// Await the expiry of every row c1 has not seen (the second batch).
	deadline := time.Now().Add(cfg.FeedRetention + 30*time.Second)
	for len(feedTTLs(t, st, "bob", 1)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("feed rows did not expire")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// c2 saw the second batch, so its rows going is not its expiry: it
	// expires by its own horizon, which is later by as long as the second
	// sync came after the second batch was written.
	time.Sleep(time.Until(time.UnixMilli(c2.SinceMs).Add(cfg.FeedRetention)))
	for name, cur := range map[string]model.SyncCursor{"old": c1, "newer": c2, "beginning": model.NewSyncCursor(2)} {
		if _, err := st.Sync(ctx, "bob", cur, 10); !errors.Is(err, store.ErrCursorExpired) {
			t.Errorf("%s cursor after expiry: %v, want ErrCursorExpired", name, err)
		}
	}
	// After a resync the device syncs from a cursor at the head: it works
	// and sees exactly the new events.
	third := batch(3)
	got, _, err = syncAll(model.SyncCursor{Next: c2.Next, SinceMs: time.Now().UnixMilli()})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(third) {
		t.Fatalf("after resync: %v %v, want %v", got, err, third)
	}
}

// Cursors are judged by the smallest retention any pod writes with, not
// only the process's own; keeping the feed forever judges none expired.
func TestCursorJudgedBySmallestRetentionInUse(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	cfg.FeedRetention = time.Hour
	msgtest.Keyspace(t, cfg)
	long := msgtest.Store(t, cfg)
	ctx := context.Background()
	old := model.SyncCursor{Next: []int64{0}, SinceMs: time.Now().Add(-30 * time.Second).UnixMilli()}
	cfg.FeedRetention = 20 * time.Second
	short := msgtest.Store(t, cfg) // announces 20 s before long's first read
	cfg.FeedRetention = config.FeedRetentionForever
	forever := msgtest.Store(t, cfg)
	if long.FeedTTL() != 3600 || short.FeedTTL() != 20 || forever.FeedTTL() != 0 {
		t.Fatalf("feed TTLs %d %d %d", long.FeedTTL(), short.FeedTTL(), forever.FeedTTL())
	}
	for name, st := range map[string]*store.Store{"long": long, "short": short, "forever": forever} {
		if _, err := st.Sync(ctx, "bob", old, 10); !errors.Is(err, store.ErrCursorExpired) {
			t.Errorf("%s: 30 s old cursor: %v, want ErrCursorExpired (20 s retention in use)", name, err)
		}
		// Fresh when used: opening the stores above may take seconds.
		fresh := model.SyncCursor{Next: []int64{0}, SinceMs: time.Now().UnixMilli()}
		if _, err := st.Sync(ctx, "bob", fresh, 10); err != nil {
			t.Errorf("%s: fresh cursor: %v", name, err)
		}
	}
}

// IM_FEED_RETENTION=0: feed rows get no TTL and no cursor expires.
func TestFeedKeptForever(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	cfg.FeedRetention = config.FeedRetentionForever
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	ctx := context.Background()
	conv := model.ConvID("alice", "bob")
	if err := st.Persist(ctx, []store.Item{{Part: 0, Off: 1, Rec: msg(conv, "alice", "a", 1000)}}); err != nil {
		t.Fatal(err)
	}
	if ttls := feedTTLs(t, st, "bob", 0); len(ttls) != 1 || ttls[1][0] != -1 {
		t.Fatalf("feed rows %v, want one without TTL", ttls)
	}
	ancient := model.SyncCursor{Next: []int64{0}, SinceMs: 1}
	p, err := st.Sync(ctx, "bob", ancient, 10)
	if err != nil || len(p.Events) != 1 {
		t.Fatalf("ancient cursor: %+v %v", p.Events, err)
	}
}
