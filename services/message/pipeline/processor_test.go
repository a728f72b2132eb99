package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

var errTooBig = errors.New("permanent: mutation too large")

type fakeStore struct {
	mu            sync.Mutex
	poison        int64 // the timeline write of a batch holding this offset fails permanently
	poisonIndex   int64 // the index write of a batch holding this offset fails permanently
	failures      int   // PersistStage fails this many times first
	persisted     []store.Item
	indexed       [][]int64                 // the offsets of each index write
	indexGate     chan struct{}             // if set, each index write takes a token first
	indexFail     chan struct{}             // closed: an index write held at the gate fails
	indexEntered  chan struct{}             // with indexGate: gets a token as an index write reaches the gate
	ids           map[string]store.StoredID // msg_ids rows: the lowest seq wins, as in Cassandra
	lookups       int
	timelineReads int
	heads         map[int32]int64 // SetPartitionState's, per partition
	log           *[]string
}

func (f *fakeStore) PersistStage(ctx context.Context, items []store.Item, stage store.Stage) error {
	if stage == store.StageIndex && f.indexGate != nil {
		f.indexEntered <- struct{}{}
		select { // held until the test lets it through, or fails it
		case <-f.indexGate:
		case <-f.indexFail:
			return errors.New("transient: write timeout")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return errors.New("transient: write timeout")
	}
	if stage == store.StageIndex {
		for _, it := range items {
			if f.poisonIndex != 0 && it.Off == f.poisonIndex {
				return errTooBig
			}
		}
		var offs []int64
		for _, it := range items {
			offs = append(offs, it.Off)
		}
		f.indexed = append(f.indexed, offs)
		*f.log = append(*f.log, "index")
		return nil
	}
	for _, it := range items {
		if f.poison != 0 && it.Off == f.poison {
			return errTooBig
		}
	}
	f.persisted = append(f.persisted, items...)
	for _, it := range items {
		if it.Rec.Kind == protocol.KindMessage && !it.Rejected {
			if old, ok := f.ids[it.Rec.MsgID]; !ok || it.Off < old.Seq {
				f.ids[it.Rec.MsgID] = store.StoredID{ConvID: it.Rec.ConvID, Seq: it.Off, Hash: it.Hash, AtMs: it.Rec.AtMs}
			}
		}
	}
	*f.log = append(*f.log, "persist")
	return nil
}

func (f *fakeStore) LookupMessageIDs(_ context.Context, ids []string) (map[string]store.StoredID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups += len(ids)
	out := map[string]store.StoredID{}
	for _, id := range ids {
		if s, ok := f.ids[id]; ok {
			out[id] = s
		}
	}
	return out, nil
}

func (f *fakeStore) SetPartitionState(_ context.Context, part int32, _ string, maxOff int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.heads == nil {
		f.heads = map[int32]int64{}
	}
	f.heads[part] = maxOff
	return nil
}

// TimelineHas: a 1:1 or group message row at seq, as the history holds.
func (f *fakeStore) TimelineHas(_ context.Context, conv string, seq int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timelineReads++
	for _, it := range f.persisted {
		if it.Off == seq && it.Rec.ConvID == conv && it.Rec.Kind == protocol.KindMessage && !it.Rejected {
			return true, nil
		}
	}
	return false, nil
}

func (f *fakeStore) LoadGroup(_ context.Context, g string) (*store.GroupState, error) {
	return &store.GroupState{ID: g, CreatedSeq: -1, DissolvedSeq: -1, Members: map[string]store.MemberState{}}, nil
}

type fakeRouter struct {
	mu     *sync.Mutex // the store's: both append to log
	log    *[]string
	routed []Routed
	block  bool
}

func (r *fakeRouter) Route(ctx context.Context, b []Routed) error {
	if r.block {
		<-ctx.Done()
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routed = append(r.routed, b...)
	*r.log = append(*r.log, "route")
	return nil
}

type fakeDLQ struct{ reasons []string }

func (d *fakeDLQ) Produce(_ string, _ []byte, h ...mlog.Header) (int32, int64, error) {
	d.reasons = append(d.reasons, h[0].Value)
	return 0, 0, nil
}

func rec(t *testing.T, off int64, r model.Record) Record {
	t.Helper()
	v, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return Record{Part: 0, Off: off, Key: []byte(r.ConvID), Value: v}
}

func message(from, to, cmid, id string, retry bool) model.Record {
	return model.Record{Kind: protocol.KindMessage, ConvID: model.ConvID(from, to), From: from, DeviceID: "d1", AtMs: 1,
		MsgID: id, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: "hi"}, Retry: retry}
}

func newProc() (*Processor, *fakeStore, *fakeRouter, *fakeDLQ, *[]string) {
	var log []string
	st := &fakeStore{ids: map[string]store.StoredID{}, log: &log}
	rt := &fakeRouter{mu: &st.mu, log: &log}
	dlq := &fakeDLQ{}
	BackoffMin, BackoffMax = time.Millisecond, 5*time.Millisecond
	return &Processor{Store: st, Router: rt, DeadLetter: dlq, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, rt, dlq, &log
}

func TestProcessOrderRetryDedupeDeadLetter(t *testing.T) {
	p, st, rt, dlq, log := newProc()
	st.failures = 3
	batch := []Record{
		rec(t, 10, message("alice", "bob", "c1", "m1", false)),
		{Part: 0, Off: 11, Key: []byte("p:alice:bob"), Value: []byte("garbage")},
		rec(t, 12, message("bob", "alice", "c2", "m2", false)),
		rec(t, 13, message("alice", "bob", "c1", "m1", true)), // retry copy in the same batch
	}
	if err := p.Process(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(st.persisted) != 2 || st.persisted[0].Off != 10 || st.persisted[1].Off != 12 {
		t.Fatalf("persisted %+v", st.persisted)
	}
	if len(dlq.reasons) != 1 {
		t.Fatalf("dead letters %v", dlq.reasons)
	}
	if len(rt.routed) != 2 || rt.routed[0].Event.Seq != 10 || rt.routed[1].Event.Seq != 12 ||
		rt.routed[0].ExceptDevice != "d1" || rt.routed[0].Users[0] != "alice" || rt.routed[0].Users[1] != "bob" {
		t.Fatalf("routed %+v", rt.routed)
	}
	if got := strings.Join(*log, ","); got != "persist,route,index" {
		t.Fatalf("stage order %v: route must follow the timeline rows, the index follow route", got)
	}
	// A retry copy in a later batch is dropped against the durable seq; a
	// replay of the original (same offset) is not.
	if err := p.Process(context.Background(), []Record{rec(t, 20, message("alice", "bob", "c1", "m1", true))}); err != nil {
		t.Fatal(err)
	}
	p.window = window{} // as after a restart: only the durable check remains
	if err := p.Process(context.Background(), []Record{rec(t, 21, message("alice", "bob", "c1", "m1", true))}); err != nil {
		t.Fatal(err)
	}
	if err := p.Process(context.Background(), []Record{rec(t, 10, message("alice", "bob", "c1", "m1", false))}); err != nil {
		t.Fatal(err)
	}
	if len(st.persisted) != 3 || st.persisted[2].Off != 10 {
		t.Fatalf("after retries and replay: %+v", st.persisted)
	}
}

// A batch that cannot finish (router or store stuck) returns an error when
// ctx ends, so the caller does not commit it.
func TestProcessHandsBackOnShutdown(t *testing.T) {
	p, st, rt, _, _ := newProc()
	rt.block = true
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.Process(ctx, []Record{rec(t, 1, message("alice", "bob", "c1", "m1", false))}); err == nil {
		t.Fatal("stuck route returned nil: the batch would be committed")
	}
	rt.block = false
	st.failures = 1 << 30
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := p.Process(ctx2, []Record{rec(t, 2, message("alice", "bob", "c2", "m2", false))}); err == nil {
		t.Fatal("failing store returned nil: a transient error was skipped")
	}
}

// A record that fails permanently is dead-lettered alone; the rest of its
// batch is persisted and routed, in order.
func TestProcessPermanentFailureIsolated(t *testing.T) {
	p, st, rt, dlq, _ := newProc()
	p.Permanent = func(err error) bool { return errors.Is(err, errTooBig) }
	st.poison = 31
	batch := []Record{
		rec(t, 30, message("alice", "bob", "c1", "m1", false)),
		rec(t, 31, message("alice", "bob", "c2", "m2", false)),
		rec(t, 32, message("alice", "bob", "c3", "m3", false)),
	}
	if err := p.Process(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(st.persisted) != 2 || st.persisted[0].Off != 30 || st.persisted[1].Off != 32 {
		t.Fatalf("persisted %+v", st.persisted)
	}
	if len(dlq.reasons) != 1 || !strings.Contains(dlq.reasons[0], "too large") {
		t.Fatalf("dead letters %v", dlq.reasons)
	}
	if len(rt.routed) != 2 || rt.routed[1].Event.Seq != 32 {
		t.Fatalf("routed %+v", rt.routed)
	}
}

// A record whose index rows fail permanently on their own is dropped from
// the index only: it stays stored and routed, and the rest of the lot is
// indexed.
func TestIndexPermanentFailureIsolated(t *testing.T) {
	p, st, rt, dlq, _ := newProc()
	p.Permanent = func(err error) bool { return errors.Is(err, errTooBig) }
	st.poisonIndex = 41
	batch := []Record{
		rec(t, 40, message("alice", "bob", "c1", "m1", false)),
		rec(t, 41, message("alice", "bob", "c2", "m2", false)),
		rec(t, 42, message("alice", "bob", "c3", "m3", false)),
	}
	if err := p.Process(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if len(st.persisted) != 3 || len(rt.routed) != 3 || len(dlq.reasons) != 0 {
		t.Fatalf("persisted %d, routed %d, dead letters %v: all three are stored and routed", len(st.persisted), len(rt.routed), dlq.reasons)
	}
	if fmt.Sprint(st.indexed) != "[[40] [42]]" {
		t.Fatalf("index writes %v, want [[40] [42]] (the lot failed, then one by one without 41)", st.indexed)
	}
}

type hintingRouter struct {
	fakeRouter
	users []string
	since time.Time
	calls int
}

func (h *hintingRouter) HintLoggedInSince(_ context.Context, users []string, since time.Time) {
	h.users, h.since = append([]string(nil), users...), since
	slices.Sort(h.users)
	h.calls++
}

// An index lot written more than IndexLateAfter after its routing makes
// the Router hint the devices of its users that logged in since a second
// before the routing; a timely lot does not.
func TestLateIndexHints(t *testing.T) {
	tests := []struct {
		name  string
		ago   time.Duration // how long before the index write the batch was routed
		calls int
	}{
		{"timely", 0, 0},
		{"late", 2 * IndexLateAfter, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, rt, _, _ := newProc()
			h := &hintingRouter{fakeRouter: *rt}
			p.Router = h
			d, err := p.Deliver(context.Background(), context.Background(), []Record{
				rec(t, 50, message("alice", "bob", "c1", "m1", false)),
				rec(t, 51, message("carol", "alice", "c2", "m2", false)),
			})
			if err != nil {
				t.Fatal(err)
			}
			d.routedAt = d.routedAt.Add(-tc.ago)
			if err := p.Index(context.Background(), context.Background(), []*Delivered{d}); err != nil {
				t.Fatal(err)
			}
			if h.calls != tc.calls {
				t.Fatalf("%d hint calls, want %d", h.calls, tc.calls)
			}
			if tc.calls > 0 && (fmt.Sprint(h.users) != "[alice bob carol]" || !h.since.Equal(d.routedAt.Add(-time.Second))) {
				t.Fatalf("hinted %v since %v, want [alice bob carol] since a second before the routing (%v)", h.users, h.since, d.routedAt)
			}
		})
	}
}
