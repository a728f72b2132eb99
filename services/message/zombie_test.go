package message_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/protocol"
)

type noDeadLetters struct{ t *testing.T }

func (d noDeadLetters) Produce(string, []byte, ...mlog.Header) (int32, int64, error) {
	d.t.Error("a valid record was dead-lettered")
	return 0, 0, nil
}

// Writers of one partition that overlap — the owner, zombies still working
// through batches they fetched before they lost the partition, and new
// owners that start from a later commit (everything before it persisted) —
// each process the records in offset order from where they began, in
// batches of their own sizes and with windows of their own, concurrently
// against real Cassandra. However their reads and writes interleave, every
// msg_id is stored once, at its first offset, and a conflicting reuse is
// rejected once.
func TestOverlappingWritersStoreOneCopy(t *testing.T) {
	cfg := msgtest.Config(t, 1)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	conv := model.ConvID("alice", "bob")
	// 60 records: every message is sent twice (its copy 5 offsets later);
	// m7 is also reused for other content.
	var recs []pipeline.Record
	var firsts []int64
	add := func(r model.Record) {
		v, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, pipeline.Record{Part: 0, Off: int64(len(recs)), Key: []byte(conv), Value: v})
	}
	at := time.Now()
	for i := 0; len(recs) < 60; i++ {
		cmid := fmt.Sprint("m", i)
		firsts = append(firsts, int64(len(recs)))
		add(record("alice", "bob", cmid, "text "+cmid, at))
		if i >= 5 {
			copyOf := fmt.Sprint("m", i-5)
			add(record("alice", "bob", copyOf, "text "+copyOf, at))
		}
		if i == 12 {
			add(record("alice", "bob", "m7", "other content", at))
		}
	}
	writer := func() *pipeline.Processor {
		return &pipeline.Processor{Store: st, Router: pipeline.NopRouter{}, DeadLetter: noDeadLetters{t},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	// committed is the offset below which the owner has committed: every
	// record before it is persisted. A writer that takes the partition
	// over starts there, as a consumer starts at the group's commit.
	var mu sync.Mutex
	committed := sync.NewCond(&mu)
	var commit int
	run := func(p *pipeline.Processor, from, batch int, owner bool) {
		mu.Lock()
		for commit < from {
			committed.Wait()
		}
		mu.Unlock()
		for i := from; i < len(recs); i += batch {
			end := min(i+batch, len(recs))
			if err := p.Process(context.Background(), recs[i:end]); err != nil {
				t.Error(err)
				return
			}
			if owner {
				mu.Lock()
				commit = end
				committed.Broadcast()
				mu.Unlock()
			}
		}
	}
	var wg sync.WaitGroup
	for _, w := range []struct {
		from, batch int
		owner       bool
	}{{0, 7, true}, {0, 3, false}, {0, 1, false}, {20, 11, false}, {35, 2, false}} {
		wg.Add(1)
		go func() { defer wg.Done(); run(writer(), w.from, w.batch, w.owner) }()
	}
	wg.Wait()
	// A second round in other batch sizes replays everything once more.
	run(writer(), 0, 13, false)

	ctx := context.Background()
	h, _, err := st.History(ctx, conv, model.MaxSeq, 100)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string][]int64{}
	for _, ev := range h {
		stored[ev.Message.ClientMsgID] = append(stored[ev.Message.ClientMsgID], ev.Seq)
	}
	for i, first := range firsts {
		cmid := fmt.Sprint("m", i)
		if got := stored[cmid]; len(got) != 1 || got[0] != first {
			t.Errorf("%s stored at %v, want once at %d", cmid, got, first)
		}
	}
	if len(h) != len(firsts) {
		t.Errorf("history holds %d messages, %d were sent", len(h), len(firsts))
	}
	page, err := st.Sync(ctx, "alice", model.NewSyncCursor(1), 100)
	if err != nil {
		t.Fatal(err)
	}
	rejected := 0
	for _, ev := range page.Events {
		if ev.Kind == protocol.KindRejected {
			rejected++
			if ev.Message.ClientMsgID != "m7" || ev.RefSeq != firsts[7] {
				t.Errorf("rejected event %+v, want m7's reuse referring to %d", ev, firsts[7])
			}
		}
	}
	if rejected != 1 {
		t.Errorf("%d rejected events in alice's feed, want 1", rejected)
	}
}
