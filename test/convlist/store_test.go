// Package convlist tests the conversation list's store side (the
// pipeline's writes, ordering, paging, unread counts) against a real
// Cassandra; the HTTP tests are in services/message/convlist_test.go.
package convlist

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

func newStore(t testing.TB) *store.Store {
	t.Helper()
	m, err := config.LoadMessage(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m.Cassandra.Hosts = testdeps.Cassandra(t)
	m.Cassandra.Keyspace = testdeps.Unique("imcl")
	t.Cleanup(func() {
		if err := store.DropKeyspace(m.Cassandra, m.Cassandra.Keyspace); err != nil {
			t.Logf("drop keyspace: %v", err)
		}
	})
	if err := store.Migrate(m.Cassandra); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	st, err := store.Open(m.Cassandra, testdeps.Unique("imcl"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// log is a fake partitioned log: it hands out offsets per partition the
// way Kafka would (conversations hash to a partition; offsets are shared).
type log struct {
	next [4]int64
}

func (l *log) part(conv string) int32 {
	h := 0
	for _, c := range conv {
		h = h*31 + int(c)
	}
	return int32(max(h, -h) % 4)
}

func (l *log) item(r model.Record) store.Item {
	p := l.part(r.ConvID)
	off := l.next[p]
	l.next[p]++
	return store.Item{Part: p, Off: off, Rec: r}
}

var n int

func message(conv, from, text string, at int64) model.Record {
	n++
	return model.Record{V: 1, Kind: protocol.KindMessage, ConvID: conv, From: from, AtMs: at,
		MsgID: fmt.Sprintf("m-%s-%d", from, n), ClientMsgID: fmt.Sprintf("c-%d", n), Type: protocol.TypeText,
		Body: &protocol.Body{Text: text}}
}

// persist writes each item as its own pipeline batch (one partition each).
func persist(t testing.TB, st *store.Store, items ...store.Item) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, it := range items {
		if err := st.Persist(ctx, []store.Item{it}); err != nil {
			t.Fatal(err)
		}
	}
}

func list(t testing.TB, st *store.Store, user string, cur store.ListCursor, limit int) store.ListPage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := st.ConversationList(ctx, user, cur, limit)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ids(es []store.ConvListEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ConvID)
	}
	return out
}

func TestStoreListOrderUnreadRecall(t *testing.T) {
	st := newStore(t)
	var l log
	base := time.Now().UnixMilli()
	ab, ac, ad := model.ConvID("alice", "bob"), model.ConvID("alice", "carol"), model.ConvID("alice", "dave")
	m1 := l.item(message(ab, "bob", "hi alice", base))
	m2 := l.item(message(ac, "carol", "hello", base+1))
	m3 := l.item(message(ac, "carol", "are you there", base+2))
	m4 := l.item(message(ad, "alice", "hey dave", base+3))
	persist(t, st, m1, m2, m3, m4)
	p := list(t, st, "alice", store.ListCursor{}, 10)
	if got, want := ids(p.Conversations), []string{ad, ac, ab}; !slices.Equal(got, want) || p.More {
		t.Fatalf("order %v more=%v, want %v", got, p.More, want)
	}
	unread := map[string]int{}
	for _, e := range p.Conversations {
		unread[e.ConvID] = e.Unread
	}
	if unread[ab] != 1 || unread[ac] != 2 || unread[ad] != 0 {
		t.Fatalf("unread %v", unread)
	}
	c := p.Conversations[1]
	if c.LastMessage == nil || c.LastMessage.Preview != "are you there" || c.LastMessage.From != "carol" || c.LastMessage.Seq != m3.Off || c.LastMessage.AtMs != base+2 {
		t.Fatalf("last message %+v", c.LastMessage)
	}
	// bob is read up to m1; a reply in ab moves ab to the top.
	persist(t, st, l.item(model.Record{V: 1, Kind: protocol.KindRead, ConvID: ac, From: "alice", AtMs: base + 4, RefSeq: m2.Off}))
	m5 := l.item(message(ab, "bob", "ping", base+5))
	persist(t, st, m5)
	p = list(t, st, "alice", store.ListCursor{}, 10)
	if got, want := ids(p.Conversations), []string{ab, ad, ac}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if p.Conversations[0].Unread != 2 || p.Conversations[2].Unread != 1 {
		t.Fatalf("unread after read: ab %d ac %d", p.Conversations[0].Unread, p.Conversations[2].Unread)
	}
	// A recall of the last message: shown as recalled, no preview, not counted.
	persist(t, st, l.item(model.Record{V: 1, Kind: protocol.KindRecall, ConvID: ab, From: "bob", AtMs: base + 6, RefSeq: m5.Off}))
	p = list(t, st, "alice", store.ListCursor{}, 1)
	e := p.Conversations[0]
	if e.LastMessage == nil || !e.LastMessage.Recalled || e.LastMessage.Preview != "" || e.Unread != 1 || !p.More {
		t.Fatalf("after recall: %+v last %+v more=%v", e, e.LastMessage, p.More)
	}
	// Replaying the original message does not bring its preview back.
	persist(t, st, m5)
	p = list(t, st, "alice", store.ListCursor{}, 1)
	if lm := p.Conversations[0].LastMessage; !lm.Recalled || lm.Preview != "" {
		t.Fatalf("replay resurrected the preview: %+v", lm)
	}
	// bob's own view: his sends do not count as unread for him.
	pb := list(t, st, "bob", store.ListCursor{}, 10)
	if len(pb.Conversations) != 1 || pb.Conversations[0].Unread != 0 || pb.Conversations[0].ConvID != ab {
		t.Fatalf("bob's list %+v", pb.Conversations)
	}
}

func TestStoreUnreadCap(t *testing.T) {
	st := newStore(t)
	var l log
	base := time.Now().UnixMilli()
	ctx := context.Background()
	// Counted alone (one conversation with unread messages) and counted
	// together (several in one bucket): the same answers.
	for _, peers := range [][]string{{"frank"}, {"gus", "hal", "ike"}} {
		var items []store.Item
		for i := range 120 {
			for j, p := range peers {
				if i < 100*j { // gus: 120 messages, hal: 20, ike: none
					continue
				}
				conv := model.ConvID("erin"+peers[0], p)
				items = append(items, l.item(message(conv, p, "x", base+int64(i))))
			}
		}
		byPart := map[int32][]store.Item{}
		for _, it := range items {
			byPart[it.Part] = append(byPart[it.Part], it)
		}
		for _, b := range byPart {
			if err := st.Persist(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		p := list(t, st, "erin"+peers[0], store.ListCursor{}, 10)
		for _, e := range p.Conversations {
			want, more := store.MaxUnreadCount, true
			if e.ConvID == model.ConvID("erin"+peers[0], "hal") {
				want, more = 20, false
			}
			if e.ConvID == model.ConvID("erin"+peers[0], "ike") {
				t.Fatalf("ike has no message yet is listed: %+v", e)
			}
			if e.Unread != want || e.UnreadMore != more {
				t.Fatalf("%s: unread %d more=%v, want %d more=%v", e.ConvID, e.Unread, e.UnreadMore, want, more)
			}
		}
	}
}

// TestStorePagingWithActivity walks a list in pages while conversations
// get new messages: no conversation shows twice, and every one that had
// no activity during the walk shows exactly once.
func TestStorePagingWithActivity(t *testing.T) {
	st := newStore(t)
	var l log
	// Times spread over several hour slots, some sharing a slot.
	base := time.Now().Add(-48*time.Hour).UnixMilli() / 3_600_000 * 3_600_000
	const total = 37
	var convs []string
	for i := range total {
		peer := fmt.Sprintf("peer%02d", i)
		conv := model.ConvID("gina", peer)
		convs = append(convs, conv)
		at := base + int64(i/3)*3_600_000 + int64(i%3)*1000
		persist(t, st, l.item(message(conv, peer, "m", at)))
	}
	seen := map[string]int{}
	moved := map[string]bool{}
	cur := store.ListCursor{}
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("too many pages")
		}
		p := list(t, st, "gina", cur, 5)
		for _, e := range p.Conversations {
			seen[e.ConvID]++
		}
		if page == 1 || page == 3 {
			// Activity in one shown and one not yet shown conversation.
			for _, i := range []int{total - 1 - page, page * 2} {
				conv := convs[i]
				moved[conv] = true
				persist(t, st, l.item(message(conv, fmt.Sprintf("peer%02d", i), "new", time.Now().UnixMilli())))
			}
		}
		if !p.More {
			break
		}
		cur = p.Next
		// The cursor survives its opaque form.
		if cur, _ = store.DecodeListCursor(cur.Encode()); !cur.Set {
			t.Fatal("cursor lost")
		}
	}
	for _, c := range convs {
		if seen[c] > 1 {
			t.Errorf("%s shown %d times", c, seen[c])
		}
		if !moved[c] && seen[c] != 1 {
			t.Errorf("%s (no activity during the walk) shown %d times", c, seen[c])
		}
	}
	// A fresh walk after the activity shows all of them once, newest first.
	var all []store.ConvListEntry
	cur = store.ListCursor{}
	for {
		p := list(t, st, "gina", cur, 7)
		all = append(all, p.Conversations...)
		if !p.More {
			break
		}
		cur = p.Next
	}
	if len(all) != total {
		t.Fatalf("fresh walk: %d conversations, want %d", len(all), total)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ActivityMs > all[i-1].ActivityMs {
			t.Fatalf("not newest first at %d: %d after %d", i, all[i].ActivityMs, all[i-1].ActivityMs)
		}
	}
}

func TestStorePinMute(t *testing.T) {
	st := newStore(t)
	var l log
	base := time.Now().UnixMilli()
	var convs []string
	for i := range 6 {
		peer := fmt.Sprintf("p%d", i)
		conv := model.ConvID("hank", peer)
		convs = append(convs, conv)
		persist(t, st, l.item(message(conv, peer, "m", base+int64(i))))
	}
	ctx := context.Background()
	yes, no := true, false
	// Pin the two oldest; mute one.
	for _, c := range []string{convs[0], convs[1]} {
		if err := st.SetConvFlags(ctx, "hank", c, &yes, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetConvFlags(ctx, "hank", convs[3], nil, &yes); err != nil {
		t.Fatal(err)
	}
	want := []string{convs[1], convs[0], convs[5], convs[4], convs[3], convs[2]}
	for _, limit := range []int{1, 2, 3, 10} {
		var got []string
		cur := store.ListCursor{}
		for range 10 {
			p := list(t, st, "hank", cur, limit)
			for _, e := range p.Conversations {
				got = append(got, e.ConvID)
				if e.Pinned != (e.ConvID == convs[0] || e.ConvID == convs[1]) || e.Muted != (e.ConvID == convs[3]) {
					t.Fatalf("flags of %s: pinned=%v muted=%v", e.ConvID, e.Pinned, e.Muted)
				}
			}
			if !p.More {
				break
			}
			cur = p.Next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
	}
	if err := st.SetConvFlags(ctx, "hank", convs[1], &no, &no); err != nil {
		t.Fatal(err)
	}
	p := list(t, st, "hank", store.ListCursor{}, 10)
	if got := ids(p.Conversations); got[0] != convs[0] || got[1] != convs[5] {
		t.Fatalf("after unpin: %v", got)
	}
}
