package client

import (
	"fmt"
	"testing"

	"github.com/imcluster/imcluster/services/protocol"
)

func TestDedupeWindowOfOneConversation(t *testing.T) {
	d := newDedupe(4)
	cases := []struct {
		seq            int64
		wantSeen, sure bool
	}{{0, false, true}, {0, true, true}, {5, false, true}, {3, false, true}, {5, true, true}, {3, true, true}, {4, false, true}}
	for _, c := range cases {
		seen, sure := d.check("c", c.seq)
		if seen != c.wantSeen || sure != c.sure {
			t.Fatalf("check(%d) = %v, %v; want %v, %v", c.seq, seen, sure, c.wantSeen, c.sure)
		}
		if !seen {
			d.add("c", c.seq)
		}
	}
	// Far more seqs than the window: it stays bounded, recent seqs are
	// still recognised, older ones are "cannot tell", never "new".
	for q := int64(10); q < 10+3*dedupeWindow; q++ {
		if seen, sure := d.check("c", q); seen || !sure {
			t.Fatalf("fresh seq %d: seen %v sure %v", q, seen, sure)
		}
		d.add("c", q)
	}
	s := d.byConv["c"].Value.(*convSeen)
	if cap(s.seqs) > dedupeWindow {
		t.Fatalf("window holds room for %d > %d seqs", cap(s.seqs), dedupeWindow)
	}
	last := int64(10 + 3*dedupeWindow - 1)
	for _, q := range []int64{last, last - 10} {
		if seen, sure := d.check("c", q); !seen || !sure {
			t.Fatalf("recent seq %d: seen %v sure %v, want a sure repeat", q, seen, sure)
		}
	}
	if _, sure := d.check("c", 5); sure {
		t.Fatal("a seq below the window was judged with certainty")
	}
	if seen, sure := d.check("c", last+7); seen || !sure {
		t.Fatal("a new seq above the window was not judged new")
	}
}

// TestDedupeMemoryIsBounded: memory does not grow with the number of
// conversations, and an evicted conversation's old seqs are "cannot
// tell", its newer ones "new".
func TestDedupeMemoryIsBounded(t *testing.T) {
	const maxConvs = 64
	d := newDedupe(maxConvs)
	for i := 0; i < 50*maxConvs; i++ {
		conv := fmt.Sprintf("p:a:u%d", i)
		for q := int64(0); q < 3; q++ {
			d.add(conv, int64(i)*10+q)
		}
	}
	if d.lru.Len() > maxConvs || len(d.byConv) > maxConvs {
		t.Fatalf("remembers %d/%d conversations, want at most %d", d.lru.Len(), len(d.byConv), maxConvs)
	}
	// u0 was evicted long ago: its seqs cannot be judged, a newer seq can.
	if _, sure := d.check("p:a:u0", 1); sure {
		t.Fatal("an evicted conversation's seq was judged with certainty")
	}
	if seen, sure := d.check("p:a:u0", 1_000_000); seen || !sure {
		t.Fatal("a seq above everything evicted was not judged new")
	}
	// Re-entering memory keeps that: its old seqs stay "cannot tell".
	d.add("p:a:u0", 1_000_000)
	if _, sure := d.check("p:a:u0", 2); sure {
		t.Fatal("a re-admitted conversation's old seq was judged with certainty")
	}
}

// TestNoRepeatAcrossEvictionWithKnown: with the app's store as Known, an
// event repeated after its conversation left memory never reaches OnEvent
// twice, and no event is lost; without Known it is handed on and counted.
func TestNoRepeatAcrossEvictionWithKnown(t *testing.T) {
	for _, withKnown := range []bool{true, false} {
		t.Run(fmt.Sprintf("known=%v", withKnown), func(t *testing.T) {
			store := map[string]int{} // the app's store: conv/seq -> times handed on
			cfg := Config{URLs: []string{"ws://127.0.0.1:1/"}, DedupeConversations: 16, NoSync: true,
				OnEvent: func(ev protocol.Event) { store[fmt.Sprintf("%s/%d", ev.ConvID, ev.Seq)]++ }}
			if withKnown {
				cfg.Known = func(ev protocol.Event) bool { return store[fmt.Sprintf("%s/%d", ev.ConvID, ev.Seq)] > 0 }
			}
			c := New(cfg)
			c.user.Store("me")
			const convs = 200
			for round := 0; round < 2; round++ { // round 1 replays everything (a sync from an old cursor)
				for i := 0; i < convs; i++ {
					for q := int64(0); q < 3; q++ {
						c.deliver(protocol.Event{Kind: protocol.KindRead, ConvID: fmt.Sprintf("p:me:u%d", i), Seq: int64(i)*3 + q}, round == 0)
					}
				}
			}
			if len(store) != 3*convs {
				t.Fatalf("%d events handed on, want %d", len(store), 3*convs)
			}
			repeats := 0
			for _, n := range store {
				repeats += n - 1
			}
			switch {
			case withKnown && repeats != 0:
				t.Fatalf("%d repeats reached OnEvent despite Known", repeats)
			case !withKnown && (repeats == 0 || int64(repeats) != c.Unsure()):
				t.Fatalf("%d repeats, but Unsure says %d", repeats, c.Unsure())
			}
		})
	}
}

// TestSyncRequestedAfterPushes: a long session does not let pushes pile
// up unsynced (every pushed event is replayed by the next sync).
func TestSyncRequestedAfterPushes(t *testing.T) {
	c := New(Config{URLs: []string{"ws://127.0.0.1:1/"}})
	c.user.Store("me")
	for q := int64(0); q < syncAfterPushes; q++ {
		if len(c.syncKick) != 0 {
			t.Fatalf("sync requested after %d pushes", q)
		}
		c.deliver(protocol.Event{Kind: protocol.KindRead, ConvID: "p:me:x", Seq: q}, true)
	}
	if len(c.syncKick) != 1 {
		t.Fatalf("no sync requested after %d pushes", syncAfterPushes)
	}
}

// TestKnownCoversARestart: a new Client (an app restarted) replaying from
// its persisted cursor never hands on what the app's store already has,
// also after a new event of the same conversation came first.
func TestKnownCoversARestart(t *testing.T) {
	store := map[int64]bool{10: true, 11: true, 12: true, 14: true} // stored before the restart (13 was missed)
	var handed []int64
	c := New(Config{URLs: []string{"ws://127.0.0.1:1/"}, NoSync: true,
		Known:   func(ev protocol.Event) bool { return store[ev.Seq] },
		OnEvent: func(ev protocol.Event) { handed = append(handed, ev.Seq); store[ev.Seq] = true }})
	c.user.Store("me")
	c.deliver(protocol.Event{Kind: protocol.KindRead, ConvID: "p:me:x", Seq: 15}, true) // a live push first
	for q := int64(10); q <= 15; q++ {                                                  // then the replay
		c.deliver(protocol.Event{Kind: protocol.KindRead, ConvID: "p:me:x", Seq: q}, false)
	}
	if fmt.Sprint(handed) != "[15 13]" {
		t.Fatalf("handed on %v, want [15 13]", handed)
	}
}
