//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestE2E runs one isolated cluster (its own topic, keyspace, etcd prefix);
// the subtests that kill or drain a push node start their own node on it.
func TestE2E(t *testing.T) {
	c := newCluster(t)
	a := c.startPush("push-a")
	b := c.startPush("push-b")

	t.Run("CrossNodeAndEcho", func(t *testing.T) {
		alicePhone := c.connect("alice", "alice-phone", "ios", a.wsURL)
		aliceWeb := c.connect("alice", "alice-web", "web", b.wsURL)
		bob := c.connect("bob", "bob-phone", "android", b.wsURL)
		eventually(t, "presence of alice and bob", 10*time.Second, func() bool { return c.sessions("alice") == 2 && c.sessions("bob") == 1 })
		conv := model.ConvID("alice", "bob")
		c.send("alice", "alice-phone", "bob", "hello bob")
		c.send("bob", "bob-phone", "alice", "hello alice")
		bob.await(t, "bob to get alice's message", 15*time.Second, func() bool { return hasText(bob.events, "hello bob") })
		aliceWeb.await(t, "alice's other device to get the echo", 15*time.Second, func() bool { return hasText(aliceWeb.events, "hello bob") })
		alicePhone.await(t, "alice's phone to get bob's reply", 15*time.Second, func() bool { return hasText(alicePhone.events, "hello alice") })
		// Bob's delivered receipt reaches alice (ack → push → message tier → log → route).
		alicePhone.await(t, "a delivered receipt for alice", 15*time.Second, func() bool { return alicePhone.countKind(protocol.KindDelivered) > 0 })
		// Bob's phone sent "hello alice": it is not pushed back to it (it
		// may come by the post-login resync), so only check bob's inbox.
		texts, dups := bob.messages(conv)
		if dups != 0 || len(texts) == 0 || texts[0] != "hello bob" {
			t.Fatalf("bob has %q (dups %d)", texts, dups)
		}
		if hasPushedOwn(bob, "hello alice") {
			t.Fatal("bob's own message was pushed back to the device that sent it")
		}
		// A read receipt and a recall reach both sides' devices.
		ctx := context.Background()
		var bobSeq int64 = -1
		bob.mu.Lock()
		for _, e := range bob.events {
			if e.Kind == protocol.KindMessage && e.Message != nil && e.Message.Body != nil && e.Message.Body.Text == "hello bob" {
				bobSeq = e.Seq
			}
		}
		bob.mu.Unlock()
		readMe := c.send("alice", "alice-phone", "bob", "read me")
		if readMe.Seq == nil {
			t.Fatal("send answered without a seq")
		}
		readTo := *readMe.Seq
		bob.await(t, "bob to get the message he will read", 15*time.Second, func() bool { return hasText(bob.events, "read me") })
		if err := c.api("bob", "bob-phone").Read(ctx, conv, readTo); err != nil {
			t.Fatal(err)
		}
		alicePhone.await(t, "alice to see bob's read receipt", 15*time.Second, func() bool { return hasRef(alicePhone.events, protocol.KindRead, readTo) })
		aliceWeb.await(t, "alice's web to see the read receipt", 15*time.Second, func() bool { return hasRef(aliceWeb.events, protocol.KindRead, readTo) })
		if err := c.api("alice", "alice-phone").Recall(ctx, conv, bobSeq); err != nil {
			t.Fatal(err)
		}
		bob.await(t, "bob to see the recall", 15*time.Second, func() bool { return hasRef(bob.events, protocol.KindRecall, bobSeq) })
		aliceWeb.await(t, "alice's web to see the recall", 15*time.Second, func() bool { return hasRef(aliceWeb.events, protocol.KindRecall, bobSeq) })

		// The SDK sees them online.
		svc, _ := c.service.Sign("crm", time.Hour)
		s := sdk.New(c.apiURL, svc)
		online, err := s.OnlineUsers(context.Background(), []string{"alice", "bob", "nobody"})
		if err != nil || strings.Join(online, ",") != "alice,bob" && strings.Join(online, ",") != "bob,alice" {
			t.Fatalf("online users %v, %v", online, err)
		}
		terms, err := s.OnlineTerminals(context.Background(), "alice")
		if err != nil || len(terms) != 2 {
			t.Fatalf("alice's terminals %v, %v", terms, err)
		}
		res, err := s.SendPrivateMessage(context.Background(), "crm-bot", sdk.Message{To: "bob", ClientMsgID: "sdk-1", Type: protocol.TypeText, Body: protocol.Body{Text: "from the sdk"}})
		if err != nil || res.MsgID == "" {
			t.Fatalf("sdk send: %+v %v", res, err)
		}
		bob.await(t, "bob to get the SDK's message", 15*time.Second, func() bool { return hasText(bob.events, "from the sdk") })
	})

	t.Run("SendOverSocket", func(t *testing.T) {
		carol := c.connect("carol", "carol-phone", "ios", a.wsURL)
		dan := c.connect("dan", "dan-phone", "ios", b.wsURL)
		eventually(t, "presence", 10*time.Second, func() bool { return c.sessions("dan") == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req := client.SendRequest{To: "dan", ClientMsgID: "sock-1", Type: protocol.TypeText, Body: &protocol.Body{Text: "over the socket"}}
		r1, err := carol.Send(ctx, req)
		if err != nil || r1.Status != 200 {
			t.Fatalf("send over socket: %v %+v", err, r1)
		}
		// Pushed implies stored: once dan has it, a retry finds it.
		dan.await(t, "dan to get carol's message", 15*time.Second, func() bool { return hasText(dan.events, "over the socket") })
		req.Attempt = 2
		r2, err := carol.Send(ctx, req) // a retry: same message id, answered from the store
		if err != nil {
			t.Fatal(err)
		}
		var m1, m2 client.SendResponse
		_ = json.Unmarshal(r1.Result, &m1)
		_ = json.Unmarshal(r2.Result, &m2)
		if m1.MsgID == "" || m1.MsgID != m2.MsgID || !m2.Duplicate || m2.Seq == nil || m1.Seq == nil || *m2.Seq != *m1.Seq {
			t.Fatalf("retry answered %s, first %s", r2.Result, r1.Result)
		}
		req.Attempt = 3
		req.Body = &protocol.Body{Text: "other content"}
		_, err = carol.Send(ctx, req)
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != protocol.ErrIdempotencyClash {
			t.Fatalf("reuse with other content: %v", err)
		}
		// A marker sent after the retries: delivery keeps the conversation's
		// log order, so once dan has it, any duplicate would have come first.
		marker := client.SendRequest{To: "dan", ClientMsgID: "sock-2", Type: protocol.TypeText, Body: &protocol.Body{Text: "marker"}}
		if r, err := carol.Send(ctx, marker); err != nil || r.Status != 200 {
			t.Fatalf("send marker: %v %+v", err, r)
		}
		dan.await(t, "dan to get carol's marker", 15*time.Second, func() bool { return hasText(dan.events, "marker") })
		if texts, dups := dan.messages(model.ConvID("carol", "dan")); len(texts) != 2 || texts[0] != "over the socket" || dups != 0 {
			t.Fatalf("dan got %q (dups %d)", texts, dups)
		}
	})

	t.Run("SameTerminalKickAcrossNodes", func(t *testing.T) {
		old := c.connect("erin", "erin-phone-1", "ios", a.wsURL)
		eventually(t, "erin's session", 10*time.Second, func() bool { return c.sessions("erin") == 1 })
		newer := c.connect("erin", "erin-phone-2", "ios", b.wsURL)
		select {
		case <-old.Done():
			if !errors.Is(old.Err(), client.ErrKicked) {
				t.Fatalf("old session ended with %v", old.Err())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("old session not kicked")
		}
		c.send("fay", "fay-1", "erin", "after the kick")
		newer.await(t, "the new session to receive", 15*time.Second, func() bool { return hasText(newer.events, "after the kick") })
		if c.sessions("erin") != 1 {
			t.Fatalf("erin has %d sessions, want 1", c.sessions("erin"))
		}
	})

	t.Run("OfflineThenLoginPullsUnread", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			c.send("gus", "gus-1", "hana", fmt.Sprintf("offline %d", i))
		}
		// A send's 200 means "in the log"; the consumer stores it a moment
		// later, so the unread pull is awaited until the three are stored.
		var unread struct {
			Events []protocol.Event `json:"events"`
		}
		eventually(t, "the three to be stored for the unread pull", 15*time.Second, func() bool {
			unread.Events = nil
			if err := c.api("hana", "").Get(context.Background(), "/v1/unread", &unread); err != nil {
				t.Fatal(err)
			}
			return len(unread.Events) >= 3
		})
		if len(unread.Events) != 3 {
			t.Fatalf("unread pull has %d events, want 3", len(unread.Events))
		}
		hana := c.connect("hana", "hana-phone", "ios", b.wsURL, a.wsURL)
		hana.await(t, "hana to sync the three", 15*time.Second, func() bool {
			return hasText(hana.events, "offline 1") && hasText(hana.events, "offline 2") && hasText(hana.events, "offline 3")
		})
		texts, dups := hana.messages(model.ConvID("gus", "hana"))
		if strings.Join(texts, "|") != "offline 1|offline 2|offline 3" || dups != 0 {
			t.Fatalf("hana has %q (dups %d)", texts, dups)
		}
	})

	t.Run("BadInputClosesWithCode", func(t *testing.T) {
		bystander := c.connect("ivan", "ivan-phone", "ios", a.wsURL)
		eventually(t, "ivan's session", 10*time.Second, func() bool { return c.sessions("ivan") == 1 })
		other, _ := auth.NewSigner(auth.KindUser, []byte("some-other-key-some-other-key-some-other"))
		forged, _ := other.Sign("mallory", time.Hour)
		expired, _ := c.users.Sign("mallory", -time.Hour)
		good := c.token("mallory")
		login := func(tok string) []byte {
			return []byte(`{"type":"login","token":"` + tok + `","device_id":"m1","terminal":"web"}`)
		}
		big := []byte(`{"type":"send","id":"1","send":{"to":"ivan","client_msg_id":"x","type":"text","body":{"text":"` + strings.Repeat("a", protocol.MaxFrameBytes) + `"}}}`)
		flood := make([][]byte, 400)
		for i := range flood {
			flood[i] = []byte(`{"type":"ping"}`)
		}
		cases := []struct {
			name   string
			frames [][]byte
			op     ws.OpCode
			want   string
		}{
			{"forged token", [][]byte{login(forged)}, ws.OpText, protocol.ErrUnauthenticated},
			{"expired token", [][]byte{login(expired)}, ws.OpText, protocol.ErrUnauthenticated},
			{"bad json", [][]byte{login(good), []byte(`{"type":"send",`)}, ws.OpText, protocol.ErrBadJSON},
			{"unknown field", [][]byte{login(good), []byte(`{"type":"send","id":"1","send":{},"admin":true}`)}, ws.OpText, protocol.ErrUnknownField},
			{"binary frame", [][]byte{login(good), {0, 1, 2}}, ws.OpBinary, protocol.ErrBadJSON},
			{"oversize frame", [][]byte{login(good), big}, ws.OpText, protocol.ErrTooLarge},
			{"flood", append([][]byte{login(good)}, flood...), ws.OpText, protocol.ErrRateLimited},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				nc, _, _, err := ws.Dial(context.Background(), a.wsURL)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				for i, f := range tc.frames {
					op := tc.op
					if i == 0 && len(tc.frames) > 1 {
						op = ws.OpText // the login
					}
					if wsutil.WriteClientMessage(nc, op, f) != nil {
						break
					}
				}
				if got := closeCode(t, nc); got != tc.want {
					t.Fatalf("closed with %q, want %q", got, tc.want)
				}
			})
		}
		// Nothing was stored for mallory, and ivan still gets messages.
		var page client.SyncPage
		if err := c.api("mallory", "").Get(context.Background(), "/v1/sync", &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) != 0 {
			t.Fatalf("mallory's bad frames stored %d events", len(page.Events))
		}
		c.send("judy", "judy-1", "ivan", "still here")
		bystander.await(t, "the bystander to still receive", 15*time.Second, func() bool { return hasText(bystander.events, "still here") })
	})

	t.Run("Kill9PushNodeWhileMessagesFlow", func(t *testing.T) {
		k := c.startPush("push-k")
		kate := c.connect("kate", "kate-phone", "ios", k.wsURL, b.wsURL)
		eventually(t, "kate's session", 10*time.Second, func() bool { return c.sessions("kate") == 1 })
		const n = 150
		var want []string
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := 0; i < n; i++ {
				want = append(want, fmt.Sprintf("m%03d", i))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := c.api("leo", "leo-1").Send(ctx, client.SendRequest{To: "kate", ClientMsgID: fmt.Sprintf("k9-%d", i), Type: protocol.TypeText, Body: &protocol.Body{Text: want[i]}})
				cancel()
				if err != nil {
					t.Errorf("send %d: %v", i, err)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		kate.await(t, "some messages before the crash", 15*time.Second, func() bool { return len(kate.events) >= 30 })
		c.kill("push-k", syscall.SIGKILL)
		<-c.procs["push-k"].done
		before, _ := kate.messages(model.ConvID("kate", "leo"))
		<-sent
		if len(before) >= n {
			t.Fatalf("all %d messages arrived before the kill: the crash did not hit the stream", n)
		}
		kate.await(t, "kate to reconnect to push-b", 20*time.Second, func() bool { return len(kate.nodes) >= 2 && kate.nodes[len(kate.nodes)-1] == "push-b" })
		kate.await(t, "all messages, after reconnect and sync", 30*time.Second, func() bool {
			texts, _ := kate.messagesLocked(model.ConvID("kate", "leo"))
			return len(texts) >= n
		})
		texts, dups := kate.messages(model.ConvID("kate", "leo"))
		if dups != 0 {
			t.Fatalf("%d duplicates reached the app", dups)
		}
		if strings.Join(texts, ",") != strings.Join(want, ",") {
			t.Fatalf("kate has %d messages, not each once in order: %v", len(texts), texts)
		}
		pushed, synced, dropped := kate.Stats()
		t.Logf("kate: %d messages before the kill; events: %d by push, %d by sync, %d duplicates dropped by the client",
			len(before), pushed, synced, dropped)
	})

	t.Run("TokenExpiry", func(t *testing.T) {
		// Without a token source the session ends with token_expired and
		// leaves presence.
		short := func(cfg *client.Config) {
			cfg.Token, _ = c.users.Sign("tess", 2*time.Second)
		}
		tess := c.connectWith(short, "tess", "tess-phone", "ios", a.wsURL)
		select {
		case <-tess.Done():
		case <-time.After(15 * time.Second):
			t.Fatal("tess's session outlived its token")
		}
		var se *client.ServerError
		if !errors.As(tess.Err(), &se) || se.Code != protocol.ErrTokenExpired {
			t.Fatalf("tess stopped with %v, want token_expired", tess.Err())
		}
		eventually(t, "tess's presence to go", 10*time.Second, func() bool { return c.sessions("tess") == 0 })

		// With one, the session is refreshed in place and still gets pushes.
		// The client refreshes 1 s after the welcome; a 6 s token (exp has
		// whole seconds: 5-6 s left) leaves a loaded box 4 s to deliver it.
		src := func(cfg *client.Config) {
			cfg.TokenSource = func(context.Context) (string, error) { return c.users.Sign("tom", 6*time.Second) }
		}
		tom := c.connectWith(src, "tom", "tom-phone", "ios", a.wsURL)
		first := tom.ExpiresAt()
		eventually(t, "tom's session past its first token", 20*time.Second, func() bool { return time.Now().After(first.Add(2 * time.Second)) })
		c.send("uma", "uma-phone", "tom", "still there?")
		tom.await(t, "tom to get a push after his first token expired", 15*time.Second, func() bool { return hasText(tom.events, "still there?") })
		tom.mu.Lock()
		defer tom.mu.Unlock()
		if len(tom.nodes) != 1 || len(tom.disc) != 0 {
			t.Fatalf("tom logged in %d times, disconnected %v: want one refreshed session", len(tom.nodes), tom.disc)
		}
	})

	t.Run("PresenceGoneAfterLeaseExpiry", func(t *testing.T) {
		z := c.startPush("push-z")
		_ = c.connect("zoe", "zoe-phone", "ios", z.wsURL)
		eventually(t, "zoe's session", 10*time.Second, func() bool { return c.sessions("zoe") == 1 })
		// kill -9 revokes nothing: the entries must go with push-z's lease,
		// not before it can have expired. Keep-alives only push its expiry
		// later, so the remaining TTL read before the kill bounds it from
		// below (etcd truncates it to whole seconds). Whether the first
		// look after the kill comes before that instant depends on the
		// scheduler, so every look is timed against it rather than assumed
		// to come first.
		var earliest time.Time
		eventually(t, "zoe's session and push-z under one live lease", 10*time.Second, func() bool {
			var ok bool
			earliest, ok = c.leaseExpiresNoSooner(c.msgCfg.EtcdPrefix+"/push/sessions/zoe/ios", c.msgCfg.EtcdPrefix+"/push/nodes/push-z")
			return ok
		})
		c.kill("push-z", syscall.SIGKILL)
		<-c.procs["push-z"].done
		start := time.Now()
		early := 0
		eventually(t, "zoe's presence to expire", 15*time.Second, func() bool {
			sessions, node := c.sessions("zoe"), c.nodeRegistered("push-z")
			if seen := time.Now(); seen.Before(earliest) {
				if sessions != 1 || !node {
					t.Fatalf("entries gone %v after kill -9, %v before the lease could expire: not by lease expiry",
						seen.Sub(start).Round(time.Millisecond), earliest.Sub(seen).Round(time.Millisecond))
				}
				early++
			}
			return sessions == 0 && !node
		})
		t.Logf("presence gone %v after kill -9 (lease TTL 3s); %d looks before the lease could expire found it there",
			time.Since(start).Round(100*time.Millisecond), early)
	})

	t.Run("SIGTERMDrain", func(t *testing.T) {
		d := c.startPush("push-d")
		var devs []*device
		for i := 0; i < 20; i++ {
			devs = append(devs, c.connect(fmt.Sprintf("dr%02d", i), "phone", "ios", d.wsURL, b.wsURL))
		}
		start := time.Now()
		c.kill("push-d", syscall.SIGTERM)
		select {
		case <-c.procs["push-d"].done:
		case <-time.After(10 * time.Second):
			t.Fatal("push-d did not exit within its 6s grace")
		}
		took := time.Since(start)
		if code := c.procs["push-d"].cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("push-d exited with %d", code)
		}
		if c.nodeRegistered("push-d") {
			t.Fatal("push-d still registered after drain")
		}
		for _, dv := range devs {
			dv.await(t, "reconnect to push-b", 15*time.Second, func() bool { return len(dv.nodes) >= 2 })
			dv.mu.Lock()
			var se *client.ServerError
			ok := len(dv.disc) > 0 && errors.As(dv.disc[0], &se) && se.Code == protocol.ErrDraining
			dv.mu.Unlock()
			if !ok {
				t.Fatalf("a device was not told to drain: %v", dv.disc)
			}
		}
		t.Logf("drained 20 connections in %v", took.Round(10*time.Millisecond))
		if !strings.Contains(c.procs["push-d"].log.String(), "push node stopped") {
			t.Fatal("no clean stop in push-d's log")
		}
		resp, err := http.Get(d.metrics + "/healthz")
		if err == nil {
			resp.Body.Close()
			t.Fatal("push-d still serving after exit")
		}
	})
}

func (d *device) messagesLocked(conv string) ([]string, int) {
	// Called with d.mu held by await: copy, then reuse messages' logic.
	evs := append([]protocol.Event(nil), d.events...)
	tmp := &device{events: evs, pushed: append([]bool(nil), d.pushed...)}
	return tmp.messages(conv)
}

// hasPushedOwn reports whether d got a message with text by push.
func hasPushedOwn(d *device, text string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, e := range d.events {
		if d.pushed[i] && hasText([]protocol.Event{e}, text) {
			return true
		}
	}
	return false
}

func hasRef(evs []protocol.Event, k protocol.Kind, ref int64) bool {
	for _, e := range evs {
		if e.Kind == k && e.RefSeq == ref {
			return true
		}
	}
	return false
}

func hasText(evs []protocol.Event, text string) bool {
	for _, e := range evs {
		if e.Kind == protocol.KindMessage && e.Message != nil && e.Message.Body != nil && e.Message.Body.Text == text {
			return true
		}
	}
	return false
}

// closeCode reads until the server closes; it returns the error frame's code.
func closeCode(t *testing.T, nc interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	SetReadDeadline(time.Time) error
}) string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	code := ""
	for {
		msgs, err := wsutil.ReadServerMessage(struct {
			readWriter
		}{nc}, nil)
		for _, m := range msgs {
			if m.OpCode == ws.OpText {
				var f protocol.ServerFrame
				if json.Unmarshal(m.Payload, &f) == nil && f.Type == protocol.FrameError && f.Error != nil {
					code = f.Error.Code
				}
			}
			if m.OpCode == ws.OpClose {
				if code == "" {
					_, code = ws.ParseCloseFrameData(m.Payload)
				}
				return code
			}
		}
		if err != nil {
			return code
		}
	}
}

type readWriter interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}
