package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
	"github.com/imcluster/imcluster/test/testdeps"
)

var (
	userKey     = []byte("user-key-user-key-user-key-user-key!")
	internalKey = []byte("internal-key-internal-key-internal-key")
)

type cluster struct {
	t      *testing.T
	cli    *clientv3.Client
	prefix string
	cache  *presence.Cache
	router *route.Router
	signer *auth.Signer
	msg    *fakeMessage
	nodes  map[string]*node
	// deliverURL, if set, gives the URL a node registers for deliveries
	// (its own internal listener's is given).
	deliverURL func(id, own string) string
}

type node struct {
	srv   *push.Server
	reg   *presence.Registrar
	wsURL string
	ln    net.Listener
	in    *httptest.Server
}

// fakeMessage stands in for the message tier: it records forwarded sends
// and delivered acks.
type fakeMessage struct {
	*httptest.Server
	mu        sync.Mutex
	sends     []http.Header
	delivered []protocol.DeliveredAck
}

func newCluster(t *testing.T) *cluster {
	eps := testdeps.Etcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "/" + testdeps.Unique("pushtest")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = cli.Delete(ctx, prefix, clientv3.WithPrefix())
		_ = cli.Close()
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cache := presence.NewCache(cli, prefix, nil)
	go cache.Run(ctx)
	if err := cache.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	tokens, _ := route.NewTokenSource(internalKey, "msg-1")
	signer, _ := auth.NewSigner(auth.KindUser, userKey)
	fm := &fakeMessage{}
	fm.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fm.mu.Lock()
		defer fm.mu.Unlock()
		switch r.URL.Path {
		case protocol.DeliveredPath:
			var b protocol.DeliveredBatch
			_ = json.NewDecoder(r.Body).Decode(&b)
			fm.delivered = append(fm.delivered, b.Acks...)
		default:
			fm.sends = append(fm.sends, r.Header.Clone())
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = w.Write([]byte(`{"msg_id":"m1"}`))
		}
	}))
	t.Cleanup(fm.Close)
	return &cluster{t: t, cli: cli, prefix: prefix, cache: cache, signer: signer, msg: fm, nodes: map[string]*node{},
		router: route.New(route.Options{Directory: cache, Tokens: tokens, GiveUpAfter: 3 * time.Second})}
}

func (c *cluster) startNode(id string, mod func(*push.Options)) *node {
	t := c.t
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, id)
	opt := push.Options{NodeID: id, Users: uv, Internal: iv, InternalTokens: ts, MessageURL: c.msg.URL,
		Heartbeat: 5 * time.Second, SendQueue: 64}
	if mod != nil {
		mod(&opt)
	}
	srv, err := push.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	in := httptest.NewServer(srv.InternalHandler())
	deliverURL := in.URL
	if c.deliverURL != nil {
		deliverURL = c.deliverURL(id, in.URL)
	}
	reg := presence.NewRegistrar(c.cli, c.prefix, presence.Node{ID: id, DeliverURL: deliverURL}, 3*time.Second, srv.Kick, nil)
	reg.OnResync(srv.Resync)
	srv.SetPresence(reg)
	if err := reg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	n := &node{srv: srv, reg: reg, wsURL: "ws://" + ln.Addr().String() + "/", ln: ln, in: in}
	c.nodes[id] = n
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.ln.Close()
	n.srv.Close()
	_ = n.reg.Close(ctx)
	n.in.Close()
}

func (c *cluster) token(user string, ttl time.Duration) string {
	tok, err := c.signer.Sign(user, ttl)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

type recorder struct {
	mu     sync.Mutex
	events []protocol.Event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1024)} }

func (r *recorder) on(ev protocol.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) waitCount(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for r.count() < n {
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("got %d events, want %d", r.count(), n)
		}
	}
}

func (c *cluster) connect(n *node, user, device, terminal string) (*client.Client, *recorder) {
	rec := newRecorder()
	cl := client.New(client.Config{URLs: []string{n.wsURL}, Token: c.token(user, time.Hour),
		DeviceID: device, Terminal: terminal, OnEvent: rec.on, NoSync: true})
	cl.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		c.t.Fatalf("%s/%s: %v", user, device, err)
	}
	c.t.Cleanup(cl.Close)
	return cl, rec
}

// waitSessions waits until the router's cache shows want sessions of user.
func (c *cluster) waitSessions(user string, want int) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.cache.Sessions(user)) != want {
		if time.Now().After(deadline) {
			c.t.Fatalf("sessions of %s: %v, want %d", user, c.cache.Sessions(user), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func msgEvent(conv, from, to string, seq int64, device string) protocol.Event {
	return protocol.Event{Kind: protocol.KindMessage, ConvID: conv, Seq: seq, From: from, DeviceID: device,
		Message: &protocol.Message{MsgID: fmt.Sprint("m", seq), From: from, To: to, Type: protocol.TypeText,
			Body: &protocol.Body{Text: fmt.Sprint("hello ", seq)}}}
}

func TestCrossNodeDeliveryEchoAndAcks(t *testing.T) {
	c := newCluster(t)
	a, b := c.startNode("n-a", nil), c.startNode("n-b", nil)
	_, alicePhone := c.connect(a, "alice", "alice-phone", "ios")
	_, aliceWeb := c.connect(b, "alice", "alice-web", "web")
	_, bob := c.connect(b, "bob", "bob-phone", "android")
	c.waitSessions("alice", 2)
	c.waitSessions("bob", 1)

	const n = 50
	var items []route.Item
	for i := 1; i <= n; i++ {
		items = append(items, route.Item{Event: msgEvent("p:alice:bob", "alice", "bob", int64(i*3), "alice-phone"),
			Users: []string{"alice", "bob"}, ExceptDevice: "alice-phone"})
	}
	if err := c.router.Deliver(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	bob.waitCount(t, n, 5*time.Second)
	aliceWeb.waitCount(t, n, 5*time.Second)
	for i, ev := range bob.events {
		if ev.Seq != int64((i+1)*3) {
			t.Fatalf("bob event %d has seq %d: out of order", i, ev.Seq)
		}
	}
	if got := alicePhone.count(); got != 0 {
		t.Fatalf("the sending device got its own %d events back", got)
	}
	// Bob's client acks; the node posts delivered acks (coalesced).
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.msg.mu.Lock()
		var max int64
		for _, d := range c.msg.delivered {
			if d.UserID == "bob" && d.DeviceID == "bob-phone" && d.Seq > max {
				max = d.Seq
			}
		}
		c.msg.mu.Unlock()
		if max == n*3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered ack up to %d, want %d", max, n*3)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSameTerminalKickAcrossNodes(t *testing.T) {
	c := newCluster(t)
	a, b := c.startNode("n-a", nil), c.startNode("n-b", nil)
	old, _ := c.connect(a, "carol", "carol-phone-1", "ios")
	c.waitSessions("carol", 1)
	_, _ = c.connect(b, "carol", "carol-phone-2", "ios")
	select {
	case <-old.Done():
		if old.Err() != client.ErrKicked {
			t.Fatalf("old session ended with %v, want kicked", old.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("old session was not kicked")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ss := c.cache.Sessions("carol")
		if len(ss) == 1 && ss[0].NodeID == "n-b" && ss[0].DeviceID == "carol-phone-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions after kick: %+v", ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Another terminal is not kicked.
	web, _ := c.connect(a, "carol", "carol-web", "web")
	c.waitSessions("carol", 2)
	select {
	case <-web.Done():
		t.Fatalf("web session ended: %v", web.Err())
	case <-time.After(300 * time.Millisecond):
	}
}

// rawConn is a bare WebSocket connection for misbehaving-client tests.
type rawConn struct {
	net.Conn
}

func dialRaw(t *testing.T, url string) rawConn {
	nc, _, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return rawConn{nc}
}

func (r rawConn) send(t *testing.T, op ws.OpCode, p []byte) {
	if err := wsutil.WriteClientMessage(r, op, p); err != nil {
		t.Fatal(err)
	}
}

// closedWith reads until the server closes and returns the error frame's code.
func (r rawConn) closedWith(t *testing.T) string {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	code := ""
	for {
		msgs, err := wsutil.ReadServerMessage(r, nil)
		for _, m := range msgs {
			switch m.OpCode {
			case ws.OpText:
				var f protocol.ServerFrame
				if json.Unmarshal(m.Payload, &f) == nil && f.Error != nil && f.Type == protocol.FrameError {
					code = f.Error.Code
				}
			case ws.OpClose:
				if code == "" {
					_, code = ws.ParseCloseFrameData(m.Payload)
				}
				return code
			}
		}
		if err != nil {
			if code == "" {
				t.Fatalf("connection ended without an error code: %v", err)
			}
			return code
		}
	}
}

func (c *cluster) login(t *testing.T, r rawConn, user, device string) {
	b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: c.token(user, time.Hour), DeviceID: device, Terminal: "web"})
	r.send(t, ws.OpText, b)
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	msgs, err := wsutil.ReadServerMessage(r, nil)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("no welcome: %v", err)
	}
	var f protocol.ServerFrame
	_ = json.Unmarshal(msgs[0].Payload, &f)
	if f.Type != protocol.FrameWelcome {
		t.Fatalf("got %s, want welcome", msgs[0].Payload)
	}
}

func TestBadInputClosesWithCode(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", func(o *push.Options) { o.FrameRate, o.FrameBurst = 10, 20 })
	// A bystander that must stay connected and keep receiving.
	_, by := c.connect(n, "dave", "dave-phone", "ios")
	c.waitSessions("dave", 1)

	otherKey, _ := auth.NewSigner(auth.KindUser, []byte("another-key-another-key-another-key!!"))
	forged, _ := otherKey.Sign("eve", time.Hour)
	expired := c.token("eve", -time.Hour)
	big := make([]byte, protocol.MaxFrameBytes+1)
	for i := range big {
		big[i] = 'x'
	}
	cases := []struct {
		name    string
		loginAs string // log in first with a good token as this user
		frames  [][]byte
		op      ws.OpCode
		want    string
	}{
		{"bad json before login", "", [][]byte{[]byte(`{"type":`)}, ws.OpText, protocol.ErrBadJSON},
		{"frame other than login first", "", [][]byte{[]byte(`{"type":"ping"}`)}, ws.OpText, protocol.ErrUnauthenticated},
		{"forged token", "", [][]byte{[]byte(`{"type":"login","token":"` + forged + `","device_id":"d","terminal":"web"}`)}, ws.OpText, protocol.ErrUnauthenticated},
		{"expired token", "", [][]byte{[]byte(`{"type":"login","token":"` + expired + `","device_id":"d","terminal":"web"}`)}, ws.OpText, protocol.ErrUnauthenticated},
		{"garbage token", "", [][]byte{[]byte(`{"type":"login","token":"abc","device_id":"d","terminal":"web"}`)}, ws.OpText, protocol.ErrUnauthenticated},
		{"bad device id", "", [][]byte{[]byte(`{"type":"login","token":"` + c.token("eve", time.Hour) + `","device_id":"a/b","terminal":"web"}`)}, ws.OpText, protocol.ErrInvalidField},
		{"unknown field", "eve", [][]byte{[]byte(`{"type":"ping","color":"red"}`)}, ws.OpText, protocol.ErrUnknownField},
		{"unknown type", "eve", [][]byte{[]byte(`{"type":"dance"}`)}, ws.OpText, protocol.ErrInvalidField},
		{"binary frame", "eve", [][]byte{{1, 2, 3}}, ws.OpBinary, protocol.ErrBadJSON},
		{"invalid utf8", "eve", [][]byte{{'"', 0xff, 0xfe, '"'}}, ws.OpText, protocol.ErrInvalidUTF8},
		{"oversize frame", "eve", [][]byte{big}, ws.OpText, protocol.ErrTooLarge},
		{"bad ack", "eve", [][]byte{[]byte(`{"type":"ack","acks":[{"conv_id":"","seq":1}]}`)}, ws.OpText, protocol.ErrInvalidField},
		{"ack of another's conversation", "eve", [][]byte{[]byte(`{"type":"ack","acks":[{"conv_id":"p:alice:bob","seq":1}]}`)}, ws.OpText, protocol.ErrForbidden},
		{"second login", "eve", [][]byte{[]byte(`{"type":"login","token":"x","device_id":"d","terminal":"web"}`)}, ws.OpText, protocol.ErrInvalidField},
		{"flood", "eve", func() (fs [][]byte) {
			for i := 0; i < 200; i++ {
				fs = append(fs, []byte(`{"type":"ping"}`))
			}
			return fs
		}(), ws.OpText, protocol.ErrRateLimited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, n.wsURL)
			if tc.loginAs != "" {
				c.login(t, r, tc.loginAs, "eve-"+fmt.Sprint(time.Now().UnixNano()))
			}
			for _, f := range tc.frames {
				if err := wsutil.WriteClientMessage(r, tc.op, f); err != nil {
					break // the server may close mid-flood
				}
			}
			if got := r.closedWith(t); got != tc.want {
				t.Fatalf("closed with %q, want %q", got, tc.want)
			}
		})
	}
	c.msg.mu.Lock()
	nsends := len(c.msg.sends)
	c.msg.mu.Unlock()
	if nsends != 0 {
		t.Fatalf("%d sends reached the message tier", nsends)
	}
	// The bystander is unaffected.
	if err := c.router.Deliver(context.Background(), []route.Item{{Event: msgEvent("p:dave:zed", "zed", "dave", 7, ""), Users: []string{"dave"}}}); err != nil {
		t.Fatal(err)
	}
	by.waitCount(t, 1, 5*time.Second)
}

func TestSlowConsumerIsCutOff(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", func(o *push.Options) { o.SendQueue = 8; o.WriteTimeout = time.Second })
	r := dialRaw(t, n.wsURL)
	c.login(t, r, "sloth", "sloth-1")
	c.waitSessions("sloth", 1)
	// Never read; push large events until the socket buffers and the queue fill.
	ev := msgEvent("p:a:sloth", "a", "sloth", 1, "")
	ev.Message.Body.Text = string(make([]byte, 60000))
	var items []route.Item
	for i := 1; i <= 400; i++ {
		e := ev
		e.Seq = int64(i)
		items = append(items, route.Item{Event: e, Users: []string{"sloth"}})
	}
	for i := 0; i < len(items); i += 50 {
		_ = c.router.Deliver(context.Background(), items[i:i+50])
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.srv.Connections() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("slow consumer still connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestForwardedSendCarriesIdentity(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", nil)
	cl, _ := c.connect(n, "fred", "fred-phone", "ios")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Send(ctx, map[string]any{"to": "gina", "client_msg_id": "c1", "type": "text", "body": map[string]string{"text": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || string(res.Result) != `{"msg_id":"m1"}` {
		t.Fatalf("send result %d %s", res.Status, res.Result)
	}
	c.msg.mu.Lock()
	defer c.msg.mu.Unlock()
	h := c.msg.sends[0]
	if h.Get(protocol.HeaderActAs) != "fred" || h.Get(protocol.HeaderDevice) != "fred-phone" {
		t.Fatalf("forwarded headers %v", h)
	}
	tok, _ := auth.BearerToken(h.Get("Authorization"))
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	if _, err := iv.Verify(tok); err != nil {
		t.Fatalf("forwarded send without internal token: %v", err)
	}
}

func TestDrainAndLeaseExpiry(t *testing.T) {
	c := newCluster(t)
	a := c.startNode("n-a", nil)
	disc := make(chan error, 8)
	rec := newRecorder()
	cl := client.New(client.Config{URLs: []string{a.wsURL}, Token: c.token("hank", time.Hour), DeviceID: "h1", Terminal: "ios",
		OnEvent: rec.on, NoSync: true, OnDisconnect: func(err error) {
			select {
			case disc <- err:
			default:
			}
		}})
	cl.Start()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitSessions("hank", 1)
	if err := a.reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	a.srv.Drain(ctx, 200*time.Millisecond)
	if a.srv.Connections() != 0 {
		t.Fatalf("%d connections after drain", a.srv.Connections())
	}
	// The client closes its socket (which ends the drain) before it runs
	// OnDisconnect: await it.
	select {
	case err := <-disc:
		var se *client.ServerError
		if !asServerErr(err, &se) || se.Code != protocol.ErrDraining {
			t.Fatalf("disconnect reason %v, want draining", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client saw no disconnect")
	}
	// The deregistration reaches the router's cache through its watch, in
	// its own time: await it too.
	deadline := time.Now().Add(5 * time.Second)
	for _, ok := c.cache.Node("n-a"); ok; _, ok = c.cache.Node("n-a") {
		if time.Now().After(deadline) {
			t.Fatal("drained node still registered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A node that dies without revoking: its entries go with the lease.
	b := c.startNode("n-b", nil)
	_, _ = c.connect(b, "ivy", "ivy-1", "web")
	c.waitSessions("ivy", 1)
	b.reg.Abandon() // a crash: no revoke, no logout, keep-alives stop
	_ = b.ln.Close()
	b.srv.Close()
	start := time.Now()
	deadline = start.Add(15 * time.Second)
	_, stillNode := c.cache.Node("n-b")
	for _, ok := c.cache.Node("n-b"); len(c.cache.Sessions("ivy")) != 0 || ok; _, ok = c.cache.Node("n-b") {
		if time.Now().After(deadline) {
			t.Fatal("session still present after lease expiry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(start); !stillNode || took < time.Second {
		t.Fatalf("entries vanished after %v (node present at crash: %v): not by lease expiry", took, stillNode)
	}
	t.Logf("presence gone %v after the crash (lease TTL 3s)", time.Since(start).Round(time.Millisecond))
}

func asServerErr(err error, se **client.ServerError) bool {
	e, ok := err.(*client.ServerError)
	if ok {
		*se = e
	}
	return ok
}

func TestSameNodeKickAndTimeouts(t *testing.T) {
	c := newCluster(t)
	// The login timeout also bounds each login's presence write (the
	// connection stays in its login state until etcd answered), so the
	// nodes that log sessions in keep the default one: only the silent
	// connection below meets the short timeout, on a node of its own that
	// writes nothing to etcd for it.
	n := c.startNode("n-a", func(o *push.Options) { o.Heartbeat = 400 * time.Millisecond })
	const loginTimeout = 500 * time.Millisecond
	quick := c.startNode("n-quick", func(o *push.Options) {
		o.LoginTimeout = loginTimeout
		o.Heartbeat = 400 * time.Millisecond // a sweep every 200 ms
	})

	// Same terminal, same node: the older session is kicked.
	r1 := dialRaw(t, n.wsURL)
	c.login(t, r1, "kim", "kim-1")
	r2 := dialRaw(t, n.wsURL)
	c.login(t, r2, "kim", "kim-2")
	if got := r1.closedWith(t); got != protocol.ErrKicked {
		t.Fatalf("older session closed with %q, want kicked", got)
	}

	// No login frame in time. Timed from before the dial, so the node
	// accepted it after start: closing it sooner than loginTimeout after
	// start is closing it early.
	start := time.Now()
	r3 := dialRaw(t, quick.wsURL)
	if got := r3.closedWith(t); got != protocol.ErrUnauthenticated {
		t.Fatalf("silent connection closed with %q, want unauthenticated", got)
	}
	took := time.Since(start)
	if took < loginTimeout {
		t.Fatalf("silent connection closed after %v, before the login timeout (%v)", took, loginTimeout)
	}
	t.Logf("login timeout after %v", took.Round(10*time.Millisecond))

	// Logged in, then silent: idle timeout (2.5 heartbeats).
	r4 := dialRaw(t, n.wsURL)
	c.login(t, r4, "lou", "lou-1")
	if got := r4.closedWith(t); got != protocol.ErrIdleTimeout {
		t.Fatalf("idle connection closed with %q, want idle_timeout", got)
	}
	// A client that heartbeats stays connected.
	r5 := dialRaw(t, n.wsURL)
	c.login(t, r5, "max", "max-1")
	stop := time.Now().Add(2 * time.Second)
	for time.Now().Before(stop) {
		r5.send(t, ws.OpText, []byte(`{"type":"ping"}`))
		time.Sleep(150 * time.Millisecond)
	}
	if n.srv.EpochOf("max", "max-1") == 0 {
		t.Fatal("a heartbeating client was closed")
	}
}

func TestDeliveryEndpointRefusesBadCalls(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", nil)
	userTok := c.token("mallory", time.Hour)
	internalTok, _ := func() (string, error) { ts, _ := route.NewTokenSource(internalKey, "msg-1"); return ts.Token() }()
	tooMany, _ := json.Marshal(protocol.DeliveryBatch{Deliveries: make([]protocol.Delivery, protocol.MaxDeliveryBatch+1)})
	cases := []struct {
		name, tok, body string
		want            int
	}{
		{"no token", "", `{"deliveries":[]}`, 401},
		{"user token", userTok, `{"deliveries":[]}`, 401},
		{"bad json", internalTok, `{"deliveries":`, 400},
		{"too many deliveries", internalTok, string(tooMany), 413},
		{"good", internalTok, `{"deliveries":[{"event":{"kind":"message","conv_id":"p:a:b","seq":1,"from":"a","at_ms":1},"targets":[{"user_id":"b","device_id":"x","epoch":1}]}]}`, 200},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, n.in.URL+protocol.DeliveryPath, strings.NewReader(tc.body))
		if tc.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res protocol.DeliveryResult
		_ = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == 200 && (res.Missed != 1 || res.Queued != 0) {
			t.Errorf("%s: %+v, want the absent device counted as missed", tc.name, res)
		}
	}
}
