package client_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

var (
	userKey     = []byte("client-test-user-key-client-test-user")
	internalKey = []byte("client-test-internal-key-client-test!")
)

// startNode runs a push node without presence (no etcd needed) and returns
// its WebSocket URL.
func startNode(t *testing.T, mod func(*push.Options)) string {
	t.Helper()
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "n1")
	opt := push.Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: "http://127.0.0.1:1"}
	if mod != nil {
		mod(&opt)
	}
	srv, err := push.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); srv.Close() })
	return "ws://" + ln.Addr().String() + "/"
}

func token(t *testing.T, user string) string {
	s, _ := auth.NewSigner(auth.KindUser, userKey)
	tok, err := s.Sign(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSlowSyncDoesNotStopHeartbeats: a sync that takes longer than the
// node's idle timeout must not hold back the heartbeats (the node would
// cut the session with idle_timeout, the device would reconnect and sync
// again, forever).
func TestSlowSyncDoesNotStopHeartbeats(t *testing.T) {
	// Heartbeat 1 s: idle timeout 2.5 s, on both sides (the node's sweep,
	// the client's read deadline). With 200 ms (a 500 ms timeout) a 300 ms
	// stall of a loaded box cut the session with no sync involved.
	url := startNode(t, func(o *push.Options) { o.Heartbeat = time.Second })
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"events":[],"next_cursor":"","has_more":false}`))
	}))
	t.Cleanup(api.Close)
	t.Cleanup(func() { close(release) })
	var mu sync.Mutex
	var disc []error
	c := client.New(client.Config{URLs: []string{url}, APIURL: api.URL, Token: token(t, "ursula"), DeviceID: "u1", Terminal: "ios",
		OnDisconnect: func(err error) { mu.Lock(); disc = append(disc, err); mu.Unlock() }})
	c.Start()
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond) // an idle timeout and the sweeps after it, while the sync hangs
	mu.Lock()
	defer mu.Unlock()
	if len(disc) > 0 {
		t.Fatalf("the session was lost while a sync was slow: %v", disc)
	}
}

func TestCloseWithoutOrAfterTwoStarts(t *testing.T) {
	cases := []struct {
		name   string
		starts int
	}{{"never started", 0}, {"started twice", 2}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := client.New(client.Config{URLs: []string{"ws://127.0.0.1:1/"}, Token: "x", DeviceID: "d", Terminal: "web"})
			for i := 0; i < tc.starts; i++ {
				c.Start()
			}
			closed := make(chan struct{})
			go func() { c.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hangs")
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("Done is open after Close")
			}
		})
	}
}

// TestNoFrameBeforeTheWelcome: a frame the app (or a goroutine of the
// session that just ended: a ping, an ack flush, a token refresh) writes
// while a connection is still logging in must not go out on it: the node
// takes any first frame but login as unauthenticated, and a client refused
// so stops for good. It fails as not connected instead.
func TestNoFrameBeforeTheWelcome(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	gotLogin, welcome, stop := make(chan struct{}), make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop) })
	next := make(chan protocol.ClientFrame, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := ws.Upgrade(nc); err != nil {
			return
		}
		if _, err := wsutil.ReadClientText(nc); err != nil {
			return
		}
		close(gotLogin)
		select {
		case <-welcome:
		case <-stop:
			return
		}
		w, _ := json.Marshal(protocol.ServerFrame{Type: protocol.FrameWelcome, NodeID: "n1", UserID: "vera", HeartbeatMs: time.Hour.Milliseconds()})
		if wsutil.WriteServerText(nc, w) != nil {
			return
		}
		p, err := wsutil.ReadClientText(nc)
		if err != nil {
			return
		}
		var f protocol.ClientFrame
		_ = json.Unmarshal(p, &f)
		next <- f
	}()
	c := client.New(client.Config{URLs: []string{"ws://" + ln.Addr().String() + "/"}, Token: "t", DeviceID: "v1", Terminal: "web", NoSync: true})
	c.Start()
	t.Cleanup(c.Close)
	select {
	case <-gotLogin:
	case <-time.After(10 * time.Second):
		t.Fatal("no login frame")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, map[string]string{"n": "before"}); err == nil {
		t.Fatal("a send before the welcome succeeded")
	}
	close(welcome)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.Send(wctx, map[string]string{"n": "after"}) }()
	select {
	case f := <-next:
		if f.Type != protocol.FrameSend || string(f.Send) != `{"n":"after"}` {
			t.Fatalf("the frame after the welcome is %s %s, want the send made after it", f.Type, f.Send)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no frame after the welcome")
	}
}
