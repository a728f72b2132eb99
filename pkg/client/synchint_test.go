package client_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

// A sync frame from the node (pushes may have been dropped) makes the
// client sync from its cursor within sync_within_ms, and OnSyncHint hears
// the reason.
func TestSyncHintTriggersSync(t *testing.T) {
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "n1")
	srv, err := push.New(push.Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts,
		MessageURL: "http://127.0.0.1:1", ResyncAfter: time.Hour, SyncSpread: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); srv.Close() })

	var syncs atomic.Int64
	synced := make(chan struct{}, 16)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		syncs.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(client.SyncPage{NextCursor: "c"})
		synced <- struct{}{}
	}))
	t.Cleanup(api.Close)
	reasons := make(chan string, 4)
	cl := client.New(client.Config{URLs: []string{"ws://" + ln.Addr().String() + "/"}, APIURL: api.URL,
		Token: token(t, "alice"), DeviceID: "d1", Terminal: "ios",
		OnSyncHint: func(r string) { reasons <- r }})
	cl.Start()
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	await := func(what string) {
		t.Helper()
		select {
		case <-synced:
		case <-time.After(5 * time.Second):
			t.Fatalf("no sync %s within 5 s", what)
		}
	}
	await("after the login")
	srv.Resync(presence.ReasonRouteSkipped)
	select {
	case r := <-reasons:
		if r != presence.ReasonRouteSkipped {
			t.Fatalf("OnSyncHint(%q)", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no sync frame within 5 s")
	}
	await("after the hint")
	if n := syncs.Load(); n != 2 || cl.SyncHints() != 1 {
		t.Fatalf("%d syncs and %d hints, want 2 and 1", n, cl.SyncHints())
	}
}
