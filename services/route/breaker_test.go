package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

type fakeHinter struct {
	mu    sync.Mutex
	hints map[string]int
	fail  atomic.Int32 // fail this many calls
}

func (h *fakeHinter) Hint(_ context.Context, node, reason string) error {
	if h.fail.Add(-1) >= 0 {
		return errors.New("etcd unreachable")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hints == nil {
		h.hints = map[string]int{}
	}
	h.hints[node+"/"+reason]++
	return nil
}

func (h *fakeHinter) count(node string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hints[node+"/"+presence.ReasonRouteSkipped]
}

// wedgedNode accepts connections but answers nothing until released (what
// a SIGSTOPped push process does); then it answers 200.
type wedgedNode struct {
	*httptest.Server
	released chan struct{}
	once     sync.Once
	got      atomic.Int64 // batches answered
}

func newWedgedNode(t *testing.T) *wedgedNode {
	n := &wedgedNode{released: make(chan struct{})}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-n.released:
		case <-r.Context().Done():
			return
		}
		var b protocol.DeliveryBatch
		_ = json.NewDecoder(r.Body).Decode(&b)
		n.got.Add(1)
		_ = json.NewEncoder(w).Encode(protocol.DeliveryResult{Queued: len(b.Deliveries)})
	}))
	t.Cleanup(func() { n.release(); n.Close() })
	return n
}

func (n *wedgedNode) release() { n.once.Do(func() { close(n.released) }) }

// A wedged but registered node costs the first batch GiveUpAfter; then its
// breaker skips it at once (a hint per skip) except for one short probe per
// backoff, so the healthy node's deliveries are not held; once it answers
// again, a probe closes the breaker and deliveries resume.
func TestBreakerBoundsAWedgedNode(t *testing.T) {
	w, ok := newWedgedNode(t), newFakeNode(t)
	dir := &fakeDir{
		sessions: map[string][]presence.Session{"u": {
			{UserID: "u", DeviceID: "stuck", NodeID: "w", Epoch: 1},
			{UserID: "u", DeviceID: "fine", NodeID: "ok", Epoch: 2}}},
		nodes: map[string]presence.Node{"w": {ID: "w", DeliverURL: w.URL}, "ok": {ID: "ok", DeliverURL: ok.URL}},
	}
	hints := &fakeHinter{}
	ts, _ := NewTokenSource([]byte("0123456789abcdef0123456789abcdef"), "msg-1")
	const giveUp, probe = 600 * time.Millisecond, 200 * time.Millisecond
	r := New(Options{Directory: dir, Tokens: ts, Hints: hints, GiveUpAfter: giveUp, ProbeBudget: probe,
		BreakerMin: 300 * time.Millisecond, BreakerMax: 300 * time.Millisecond})
	ctx := context.Background()
	deliver := func(seq int64) time.Duration {
		t0 := time.Now()
		if err := r.Deliver(ctx, []Item{{Event: protocol.Event{ConvID: "c", Seq: seq}, Users: []string{"u"}}}); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	const slack = 400 * time.Millisecond
	if d := deliver(1); d < giveUp || d > giveUp+slack {
		t.Fatalf("first batch to the wedged node took %v, want GiveUpAfter (%v) and at most %v more", d, giveUp, slack)
	}
	// Batches for 2 s: each skips at once, or probes within ProbeBudget.
	var total time.Duration
	n := int64(1)
	for start := time.Now(); time.Since(start) < 2*time.Second; {
		n++
		d := deliver(n)
		if d > probe+slack {
			t.Fatalf("batch %d took %v with the breaker open (probe budget %v)", n, d, probe)
		}
		total += d
		time.Sleep(20 * time.Millisecond)
	}
	// 300 ms backoff: at most ~7 probes in 2 s.
	if total > 8*(probe+50*time.Millisecond) {
		t.Fatalf("%d batches with the breaker open took %v together", n-1, total)
	}
	if got := hints.count("w"); got != int(n) {
		t.Fatalf("wedged node hinted %d times for %d skipped batches", got, n)
	}
	if _, seqs := ok.targets(); len(seqs) != int(n) {
		t.Fatalf("the healthy node got %d of %d batches", len(seqs), n)
	}
	// Unwedged: a probe gets through within a backoff, then batches flow.
	w.release()
	deadline := time.Now().Add(5 * time.Second)
	for r.br.isOpen("w") {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open 5 s after the node answers again")
		}
		n++
		deliver(n)
		time.Sleep(20 * time.Millisecond)
	}
	before := w.got.Load()
	n++
	deliver(n)
	if w.got.Load() != before+1 {
		t.Fatal("a batch after the breaker closed did not reach the node")
	}
}

// A node that refuses a batch (4xx) is hinted at once and not retried; a
// hint etcd cannot take is retried in the background until written.
func TestRefusedBatchIsHinted(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"code":"unauthenticated"}`, http.StatusUnauthorized)
	}))
	t.Cleanup(bad.Close)
	dir := &fakeDir{
		sessions: map[string][]presence.Session{"u": {{UserID: "u", DeviceID: "d", NodeID: "b", Epoch: 1}}},
		nodes:    map[string]presence.Node{"b": {ID: "b", DeliverURL: bad.URL}},
	}
	hints := &fakeHinter{}
	hints.fail.Store(2) // the first write and the first retry fail
	ts, _ := NewTokenSource([]byte("0123456789abcdef0123456789abcdef"), "msg-1")
	r := New(Options{Directory: dir, Tokens: ts, Hints: hints, GiveUpAfter: time.Minute})
	t0 := time.Now()
	if err := r.Deliver(context.Background(), []Item{{Event: protocol.Event{ConvID: "c", Seq: 1}, Users: []string{"u"}}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("a refused batch held Deliver for %v", d)
	}
	if r.br.isOpen("b") {
		t.Fatal("a node that answers (4xx) had its breaker opened")
	}
	deadline := time.Now().Add(10 * time.Second)
	for hints.count("b") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred hint was not written within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The breaker's states: closed, open for a backoff that doubles with each
// failed probe (bounded), one probe at a time once due, and a probe whose
// batch ended without a verdict lets the next batch probe.
func TestBreakerStates(t *testing.T) {
	b := newBreaker(time.Second, 4*time.Second)
	now := time.Now()
	if ok, probe := b.allow("n", now); !ok || probe {
		t.Fatal("a closed breaker must allow without probing")
	}
	if d := b.fail("n", now); d != time.Second {
		t.Fatalf("first open for %v", d)
	}
	if ok, _ := b.allow("n", now.Add(500*time.Millisecond)); ok {
		t.Fatal("allowed while open")
	}
	due := now.Add(1100 * time.Millisecond)
	if ok, probe := b.allow("n", due); !ok || !probe {
		t.Fatal("no probe once due")
	}
	if ok, _ := b.allow("n", due); ok {
		t.Fatal("a second probe while one is under way")
	}
	b.release("n") // the probe's batch was canceled
	if ok, probe := b.allow("n", due); !ok || !probe {
		t.Fatal("no probe after a released one")
	}
	for i, want := range []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if d := b.fail("n", due); d != want {
			t.Fatalf("failed probe %d: open for %v, want %v", i, d, want)
		}
		due = due.Add(want + time.Millisecond)
		if ok, probe := b.allow("n", due); !ok || !probe {
			t.Fatalf("no probe after backoff %d", i)
		}
	}
	b.forget("n")
	if ok, probe := b.allow("n", due); !ok || probe || b.openCount() != 0 {
		t.Fatal("forget did not close the breaker")
	}
	// A node that left the registry with its breaker open is pruned.
	b.fail("gone", due)
	b.fail("here", due)
	isGone := func(n string) bool { return n == "gone" }
	b.prune(due, isGone)
	if b.openCount() != 1 || !b.isOpen("here") {
		t.Fatalf("after prune: %d open, here open %v", b.openCount(), b.isOpen("here"))
	}
}

// TestHintLoggedInSince: only the nodes holding a session of the users
// that logged in at or after the moment are hinted, each once.
func TestHintLoggedInSince(t *testing.T) {
	since := time.UnixMilli(10_000)
	dir := &fakeDir{sessions: map[string][]presence.Session{
		"alice": {{UserID: "alice", DeviceID: "a1", NodeID: "n1", SinceMs: 9_999}, {UserID: "alice", DeviceID: "a2", NodeID: "n2", SinceMs: 10_000}},
		"bob":   {{UserID: "bob", DeviceID: "b1", NodeID: "n2", SinceMs: 12_000}, {UserID: "bob", DeviceID: "b2", NodeID: "n3", SinceMs: 11_000}},
		"carol": {{UserID: "carol", DeviceID: "c1", NodeID: "n4", SinceMs: 20_000}},
	}}
	h := &fakeHinter{}
	r := New(Options{Directory: dir, Hints: h})
	if n := r.HintLoggedInSince(context.Background(), []string{"alice", "bob", "dan"}, since, presence.ReasonLateIndex); n != 2 {
		t.Fatalf("hinted %d nodes, want 2 (n2, n3)", n)
	}
	want := map[string]int{"n2/" + presence.ReasonLateIndex: 1, "n3/" + presence.ReasonLateIndex: 1}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fmt.Sprint(h.hints) != fmt.Sprint(want) {
		t.Fatalf("hints %v, want %v (n1's session is older, carol was not a target)", h.hints, want)
	}
}
