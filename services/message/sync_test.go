package message_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

type convSeq struct {
	conv string
	seq  int64
}

// sendMany sends n messages between user and peers (alternating direction)
// and returns their msg_ids.
func (e *env) sendMany(t *testing.T, user string, peers []string, n int, tag string) []string {
	var ids []string
	for i := range n {
		peer := peers[i%len(peers)]
		from, to := peer, user
		if i%3 == 2 {
			from, to = user, peer
		}
		ids = append(ids, e.send(t, from, text(to, fmt.Sprintf("%s-%d", tag, i), "x")).MsgID)
	}
	return ids
}

// Invariant 5: sync pages are complete and without repeats, including
// events that land while the device is paging.
func TestSyncCompleteWhilePaging(t *testing.T) {
	e := newEnv(t, 4)
	e.start(t, server.RoleAll)
	var peers []string
	for i := range 9 {
		peers = append(peers, fmt.Sprintf("u%d", i))
	}
	sent := e.sendMany(t, "bob", peers, 60, "pre")
	var wg sync.WaitGroup
	var during []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		during = e.sendMany(t, "bob", peers, 150, "during")
	}()
	seen := map[convSeq]bool{}
	ids := map[string]int{}
	cursor := ""
	collect := func(p api.SyncResponse) {
		if len(p.Events) > 7 {
			t.Fatalf("page of %d", len(p.Events))
		}
		for _, ev := range p.Events {
			k := convSeq{ev.ConvID, ev.Seq}
			if seen[k] {
				t.Fatalf("event %v repeated", k)
			}
			seen[k] = true
			if ev.Kind == protocol.KindMessage {
				ids[ev.Message.MsgID]++
			}
		}
		cursor = p.NextCursor
	}
	pagesWhile := 0
	for {
		p := e.syncPage(t, "bob", cursor, 7)
		collect(p)
		pagesWhile++
		if !p.HasMore {
			// Caught up with what is persisted; keep polling while sends go on.
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
	// Everything sent is eventually in the feed after the cursor.
	all := append(sent, during...)
	total := len(all)
	msgtest.Eventually(t, 60*time.Second, "every message synced", func() bool {
		for {
			p := e.syncPage(t, "bob", cursor, 7)
			collect(p)
			if !p.HasMore {
				return len(ids) >= total
			}
		}
	})
	for _, id := range all {
		if ids[id] != 1 {
			t.Fatalf("msg %s seen %d times by sync (pages while sending: %d)", id, ids[id], pagesWhile)
		}
	}
	if p := e.syncPage(t, "bob", cursor, 7); len(p.Events) != 0 || p.HasMore {
		t.Fatalf("sync after the end returned %d events", len(p.Events))
	}
	t.Logf("%d events over %d pages while sending, %d total", len(seen), pagesWhile, total)
}

// The unread pull on login: pages without repeats; unread walk plus a sync
// from the first page's sync_cursor misses nothing, even for messages that
// land during the walk.
func TestUnreadPullComplete(t *testing.T) {
	e := newEnv(t, 4)
	e.start(t, server.RoleAll)
	var peers []string
	for i := range 7 {
		peers = append(peers, fmt.Sprintf("p%d", i))
	}
	var want []string
	count := map[string]int{}
	for i := range 40 {
		p := peers[i%len(peers)]
		count[p]++
		want = append(want, e.send(t, p, text("dave", fmt.Sprint("pre-", i), "x")).MsgID)
	}
	for _, p := range peers {
		e.waitPersisted(t, model.ConvID(p, "dave"), count[p])
	}
	var wg sync.WaitGroup
	var during []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 80 {
			p := peers[(i*3)%len(peers)]
			count[p]++
			during = append(during, e.send(t, p, text("dave", fmt.Sprint("during-", i), "x")).MsgID)
		}
	}()
	got := map[string]int{}
	cursor, syncCursor := "", ""
	for page := 0; ; page++ {
		r := e.c.Do(t, "GET", "/v1/unread?limit=7&cursor="+url.QueryEscape(cursor), e.user(t, "dave"), nil)
		if r.Status != 200 {
			t.Fatalf("unread: %d %s", r.Status, r.Body)
		}
		var u api.UnreadResponse
		r.Decode(t, &u)
		if page == 0 {
			syncCursor = u.SyncCursor
			if syncCursor == "" {
				t.Fatal("first unread page has no sync_cursor")
			}
		} else if u.SyncCursor != "" {
			t.Fatal("later unread page has a sync_cursor")
		}
		for _, ev := range u.Events {
			if got[ev.Message.MsgID] > 0 {
				t.Fatalf("unread repeated %s", ev.Message.MsgID)
			}
			got[ev.Message.MsgID]++
		}
		if !u.HasMore {
			break
		}
		cursor = u.NextCursor
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Fatalf("unread missed %s (sent before login)", id)
		}
	}
	wg.Wait()
	for _, p := range peers {
		e.waitPersisted(t, model.ConvID(p, "dave"), count[p])
	}
	evs, _ := e.syncAll(t, "dave", syncCursor, 100)
	for _, ev := range evs {
		if ev.Kind == protocol.KindMessage {
			got[ev.Message.MsgID]++
		}
	}
	for _, id := range append(want, during...) {
		if got[id] == 0 {
			t.Fatalf("unread + sync from sync_cursor missed %s", id)
		}
	}
}
