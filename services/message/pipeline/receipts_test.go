package pipeline

import (
	"context"
	"slices"
	"testing"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

func receipt(by, peer string, ref int64) model.Record {
	return model.Record{Kind: protocol.KindDelivered, ConvID: model.ConvID(by, peer), From: by, DeviceID: "phone", AtMs: 1, RefSeq: ref}
}

// The pipeline keeps a delivered receipt only when it acknowledges a
// message that was sent before it: decided from the batch and the
// remembered messages, and from the history (one read) otherwise.
func TestCheckReceipts(t *testing.T) {
	p, st, rt, _, _ := newProc()
	ctx := context.Background()
	// Stored earlier: alice→bob messages at 10 and 12; carol→dan at 15.
	if err := p.Process(ctx, []Record{
		rec(t, 10, message("alice", "bob", "c1", "m1", false)),
		rec(t, 12, message("alice", "bob", "c2", "m2", false)),
		rec(t, 15, message("carol", "dan", "c3", "m3", false)),
	}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		batch  []Record
		forget bool    // as after a restart: nothing remembered
		kept   []int64 // offsets of the receipts stored and routed
		reads  int     // history reads the step needs
	}{
		{"the last message, remembered", []Record{rec(t, 20, receipt("bob", "alice", 12))}, false, []int64{20}, 0},
		{"an earlier message, remembered", []Record{rec(t, 21, receipt("bob", "alice", 10))}, false, []int64{21}, 0},
		{"a seq between two messages is no message", []Record{rec(t, 25, receipt("bob", "alice", 11))}, false, nil, 1},
		{"beyond the last message, not in the history", []Record{rec(t, 22, receipt("bob", "alice", 20))}, false, nil, 1},
		{"at or after its own offset", []Record{rec(t, 23, receipt("bob", "alice", 23)), rec(t, 24, receipt("bob", "alice", 99))}, false, nil, 0},
		{"a message earlier in the same batch", []Record{
			rec(t, 30, message("bob", "alice", "c4", "m4", false)),
			rec(t, 31, receipt("alice", "bob", 30)),
		}, false, []int64{30, 31}, 0},
		{"a receipt before the message it names", []Record{
			rec(t, 40, receipt("alice", "bob", 41)),
			rec(t, 41, message("bob", "alice", "c5", "m5", false)),
		}, false, []int64{41}, 0},
		{"after a restart: the history decides", []Record{
			rec(t, 50, receipt("dan", "carol", 15)),
			rec(t, 51, receipt("bob", "alice", 12)),
			rec(t, 52, receipt("dan", "carol", 14)), // no message at 14
		}, true, []int64{50, 51}, 3},
		{"a replayed batch decides as the first time", []Record{
			rec(t, 30, message("bob", "alice", "c4", "m4", false)),
			rec(t, 31, receipt("alice", "bob", 30)),
			rec(t, 33, receipt("alice", "bob", 32)), // 32: no message
		}, false, []int64{30, 31}, 1},
		{"a conversation without messages", []Record{rec(t, 60, receipt("erin", "frank", 3))}, true, nil, 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.forget {
				p.window = window{}
			}
			persisted, routed, reads := len(st.persisted), len(rt.routed), st.timelineReads
			if err := p.Process(ctx, s.batch); err != nil {
				t.Fatal(err)
			}
			var got, pushed []int64
			for _, it := range st.persisted[persisted:] {
				got = append(got, it.Off)
			}
			for _, r := range rt.routed[routed:] {
				pushed = append(pushed, r.Event.Seq)
			}
			if !slices.Equal(got, s.kept) || !slices.Equal(pushed, s.kept) {
				t.Fatalf("stored %v, routed %v; want %v", got, pushed, s.kept)
			}
			if n := st.timelineReads - reads; n != s.reads {
				t.Fatalf("%d history reads, want %d", n, s.reads)
			}
		})
	}
}
