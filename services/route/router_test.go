package route

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

type fakeDir struct {
	mu       sync.Mutex
	sessions map[string][]presence.Session
	nodes    map[string]presence.Node
}

func (d *fakeDir) Sessions(u string) []presence.Session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[u]
}

func (d *fakeDir) Node(id string) (presence.Node, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.nodes[id]
	return n, ok
}

type fakeNode struct {
	*httptest.Server
	mu      sync.Mutex
	batches []protocol.DeliveryBatch
	fail    atomic.Int32 // answer 503 this many times
}

func newFakeNode(t *testing.T) *fakeNode {
	n := &fakeNode{}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.fail.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var b protocol.DeliveryBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.URL.Path != protocol.DeliveryPath || r.Header.Get("Authorization") == "" {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		n.mu.Lock()
		n.batches = append(n.batches, b)
		n.mu.Unlock()
		_ = json.NewEncoder(w).Encode(protocol.DeliveryResult{Queued: len(b.Deliveries)})
	}))
	t.Cleanup(n.Close)
	return n
}

func (n *fakeNode) targets() (out []protocol.Target, seqs []int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, b := range n.batches {
		if len(b.Deliveries) > protocol.MaxDeliveryBatch {
			panic("batch over MaxDeliveryBatch")
		}
		for _, d := range b.Deliveries {
			seqs = append(seqs, d.Event.Seq)
			out = append(out, d.Targets...)
		}
	}
	return out, seqs
}

func TestDeliverGroupsPerNodeSkipsGoneNodes(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	// A node whose process is gone: its port refuses connections.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + ln.Addr().String()
	_ = ln.Close()
	dir := &fakeDir{
		sessions: map[string][]presence.Session{
			"alice": {{UserID: "alice", DeviceID: "phone", NodeID: "a", Epoch: 1}, {UserID: "alice", DeviceID: "web", NodeID: "b", Epoch: 2}},
			"bob":   {{UserID: "bob", DeviceID: "phone", NodeID: "b", Epoch: 3}, {UserID: "bob", DeviceID: "tab", NodeID: "dead", Epoch: 4}, {UserID: "bob", DeviceID: "x", NodeID: "unregistered", Epoch: 5}},
		},
		nodes: map[string]presence.Node{"a": {ID: "a", DeliverURL: a.URL}, "b": {ID: "b", DeliverURL: b.URL}, "dead": {ID: "dead", DeliverURL: deadURL}},
	}
	ts, _ := NewTokenSource([]byte("0123456789abcdef0123456789abcdef"), "msg-1")
	r := New(Options{Directory: dir, Tokens: ts, GiveUpAfter: 2 * time.Second})
	b.fail.Store(2) // transient failures are retried
	var items []Item
	const n = 2500 // > 2 batches of MaxDeliveryBatch
	for i := 1; i <= n; i++ {
		items = append(items, Item{Event: protocol.Event{Kind: protocol.KindMessage, ConvID: "p:alice:bob", Seq: int64(i), From: "alice"},
			Users: []string{"alice", "bob", "alice"}, ExceptDevice: "phone"})
	}
	start := time.Now()
	if err := r.Deliver(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Deliver took %v: a gone node must not hold it", d)
	}
	at, _ := a.targets()
	if len(at) != 0 {
		t.Fatalf("alice's own sending device (phone, on a) got %d deliveries", len(at))
	}
	bt, bseqs := b.targets()
	if len(bt) != 2*n {
		t.Fatalf("node b got %d targets, want %d (alice/web and bob/phone for each)", len(bt), 2*n)
	}
	for i := 1; i < len(bseqs); i++ {
		if bseqs[i] <= bseqs[i-1] {
			t.Fatalf("node b got seq %d after %d", bseqs[i], bseqs[i-1])
		}
	}
	for _, tg := range bt {
		if tg.UserID == "bob" && tg.Epoch != 3 || tg.UserID == "alice" && tg.DeviceID != "web" {
			t.Fatalf("unexpected target %+v", tg)
		}
	}
}

func TestDeliverReturnsWhenContextEnds(t *testing.T) {
	a := newFakeNode(t)
	a.fail.Store(1 << 30)
	dir := &fakeDir{
		sessions: map[string][]presence.Session{"u": {{UserID: "u", DeviceID: "d", NodeID: "a"}}},
		nodes:    map[string]presence.Node{"a": {ID: "a", DeliverURL: a.URL}},
	}
	ts, _ := NewTokenSource([]byte("0123456789abcdef0123456789abcdef"), "msg-1")
	r := New(Options{Directory: dir, Tokens: ts, GiveUpAfter: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := r.Deliver(ctx, []Item{{Event: protocol.Event{ConvID: "c", Seq: 1}, Users: []string{"u"}}})
	if err == nil {
		t.Fatal("Deliver to a failing node returned nil before ctx ended")
	}
}
