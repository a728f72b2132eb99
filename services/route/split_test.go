package route

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestBatchOverTheByteBoundIsSplit: a batch whose JSON is bigger than the
// push node accepts is sent in smaller calls, in order, instead of being
// refused whole (413) and skipped.
func TestBatchOverTheByteBoundIsSplit(t *testing.T) {
	saved := maxDeliveryBytes
	maxDeliveryBytes = 8 << 10
	t.Cleanup(func() { maxDeliveryBytes = saved })
	var mu sync.Mutex
	var seqs []int64
	calls := 0
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b) > maxDeliveryBytes {
			http.Error(w, `{"code":"too_large"}`, http.StatusRequestEntityTooLarge)
			return
		}
		var batch protocol.DeliveryBatch
		if err := json.Unmarshal(b, &batch); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		calls++
		for _, d := range batch.Deliveries {
			seqs = append(seqs, d.Event.Seq)
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(protocol.DeliveryResult{Queued: len(batch.Deliveries)})
	}))
	t.Cleanup(node.Close)
	dir := &fakeDir{
		sessions: map[string][]presence.Session{"bob": {{UserID: "bob", DeviceID: "phone", NodeID: "a", Epoch: 1}}},
		nodes:    map[string]presence.Node{"a": {ID: "a", DeliverURL: node.URL}},
	}
	ts, _ := NewTokenSource([]byte("0123456789abcdef0123456789abcdef"), "msg-1")
	r := New(Options{Directory: dir, Tokens: ts, GiveUpAfter: 2 * time.Second})
	const n = 100
	var items []Item
	for i := 1; i <= n; i++ {
		items = append(items, Item{Users: []string{"bob"}, Event: protocol.Event{Kind: protocol.KindMessage, ConvID: "p:alice:bob", Seq: int64(i), From: "alice",
			Message: &protocol.Message{Body: &protocol.Body{Text: strings.Repeat("\x01", 200)}}}}) // escapes to 1.2 KB
	}
	if err := r.Deliver(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != n || calls < 2 {
		t.Fatalf("%d deliveries in %d calls, want %d in several", len(seqs), calls, n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("delivery %d has seq %d: order lost", i, s)
		}
	}
}
