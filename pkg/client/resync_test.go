package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/protocol"
)

// On cursor_expired the client pulls every unread message, continues the
// sync from the unread pull's sync_cursor and hands each event on exactly
// once, although the pull and the sync overlap.
func TestResyncAfterCursorExpired(t *testing.T) {
	url := startNode(t, nil)
	conv := "p:alice:bob"
	ev := func(seq int64) protocol.Event {
		return protocol.Event{Kind: protocol.KindMessage, ConvID: conv, Seq: seq, From: "alice",
			Message: &protocol.Message{MsgID: "m" + string(rune('0'+seq)), From: "alice", To: "bob", Type: protocol.TypeText}}
	}
	evs := func(seqs ...int64) []protocol.Event {
		var out []protocol.Event
		for _, s := range seqs {
			out = append(out, ev(s))
		}
		return out
	}
	var mu sync.Mutex
	var calls []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := r.URL.Query().Get("cursor")
		mu.Lock()
		calls = append(calls, r.URL.Path+"?"+cur)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		var body any
		switch r.URL.Path + "?" + cur {
		case "/v1/sync?old":
			w.WriteHeader(http.StatusGone)
			body = protocol.Error{Code: protocol.ErrCursorExpired, Message: "too old"}
		case "/v1/unread?":
			body = client.UnreadPage{Events: evs(1, 2, 3), NextCursor: "u2", HasMore: true, SyncCursor: "head"}
		case "/v1/unread?u2":
			body = client.UnreadPage{Events: evs(4, 5, 6)}
		case "/v1/sync?head": // overlaps the unread pull, plus one new event
			body = client.SyncPage{Events: evs(5, 6, 7), NextCursor: "end"}
		case "/v1/sync?end":
			body = client.SyncPage{Events: []protocol.Event{}, NextCursor: "end"}
		default:
			w.WriteHeader(http.StatusBadRequest)
			body = protocol.Error{Code: protocol.ErrInvalidField, Message: "unexpected " + r.URL.String()}
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(api.Close)

	got := map[int64]int{}
	resynced := make(chan struct{}, 1)
	var emu sync.Mutex
	c := client.New(client.Config{URLs: []string{url}, APIURL: api.URL, Token: token(t, "bob"), DeviceID: "b1", Terminal: "ios",
		Cursor: "old", NoAutoAck: true,
		OnEvent:  func(e protocol.Event) { emu.Lock(); got[e.Seq]++; emu.Unlock() },
		OnResync: func() { resynced <- struct{}{} }})
	c.Start()
	t.Cleanup(c.Close)
	select {
	case <-resynced:
	case <-time.After(10 * time.Second):
		t.Fatal("no resync")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for c.Cursor() != "end" {
		if ctx.Err() != nil {
			t.Fatalf("cursor %q, want end", c.Cursor())
		}
		time.Sleep(20 * time.Millisecond)
	}
	emu.Lock()
	defer emu.Unlock()
	for seq := int64(1); seq <= 7; seq++ {
		if got[seq] != 1 {
			t.Errorf("event %d handed on %d times, want once (all: %v)", seq, got[seq], got)
		}
	}
	if len(got) != 7 {
		t.Errorf("events %v, want 1..7", got)
	}
	if n := c.Resyncs(); n != 1 {
		t.Errorf("Resyncs = %d, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, call := range calls {
		if call[:8] == "/v1/unre" && call != "/v1/unread?" && call != "/v1/unread?u2" {
			t.Errorf("unexpected call %s", call)
		}
	}
}
