//go:build linux

package webhook

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/webhook"
	"github.com/imcluster/imcluster/services/webhook/wire"
	"github.com/imcluster/imcluster/test/testdeps"
)

// TestAsyncEvents follows one conversation through every asynchronous
// event: user_online, after_send with offline_message while the recipient
// has no device, after_read, after_send without offline_message once the
// recipient is online, after_recall, user_offline. Every request is signed;
// a captured one replayed tampered or stale is refused by the SDK handler.
func TestAsyncEvents(t *testing.T) {
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	msg := c.startMessage("message-1", true, config.EnvWebhookURL+"="+r.srv.URL+"/events", config.EnvWebhookTimeout+"=2s")
	push := c.startPush("push-1", msg)
	conv := model.ConvID("alice", "bob")
	// The presence watcher runs once it saved its starting revision.
	eventually(t, "the presence watcher", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.etcd.Get(ctx, webhook.PresenceRevKey(c.cfg.EtcdPrefix))
		return err == nil && len(resp.Kvs) == 1
	})

	alice := c.connect(msg, push, "alice", "alice-phone")
	r.awaitType(t, 20*time.Second, config.WebhookUserOnline, "alice")

	// bob has no device: the message gets after_send and offline_message.
	res1, err := c.send(msg, "alice", "bob", protocol.TypeText, &protocol.Body{Text: "are you there?"})
	if err != nil {
		t.Fatal(err)
	}
	evs := r.await(t, 30*time.Second, res1.MsgID+":after_send", res1.MsgID+":offline_message")
	for _, id := range []string{res1.MsgID + ":after_send", res1.MsgID + ":offline_message"} {
		ev := evs[id]
		if ev.ConvID != conv || ev.From != "alice" || ev.To != "bob" || res1.Seq == nil || ev.Seq != *res1.Seq ||
			ev.Message == nil || ev.Message.MsgID != res1.MsgID || ev.Message.Body.Text != "are you there?" {
			t.Fatalf("%s: %s", id, jsonOf(ev))
		}
	}
	if ev := evs[res1.MsgID+":offline_message"]; ev.UserID != "bob" {
		t.Fatalf("offline_message for %q", ev.UserID)
	}

	// bob comes online (user_online), reads (after_read).
	bob := c.connect(msg, push, "bob", "bob-phone")
	r.awaitType(t, 20*time.Second, config.WebhookUserOnline, "bob")
	eventually(t, "bob syncs the first message", 20*time.Second, func() bool {
		_, _, ok := bob.event(func(e protocol.Event) bool { return e.Message != nil && e.Message.MsgID == res1.MsgID })
		return ok
	})
	if err := c.api(msg, "bob", "bob-phone").Read(context.Background(), conv, *res1.Seq); err != nil {
		t.Fatal(err)
	}
	readID := conv + ":bob:" + strconv.FormatInt(*res1.Seq, 10) + ":after_read"
	if ev := r.await(t, 30*time.Second, readID)[readID]; ev.UserID != "bob" || ev.RefSeq != *res1.Seq || ev.ConvID != conv {
		t.Fatalf("after_read: %s", jsonOf(ev))
	}

	// bob online: after_send but no offline_message.
	eventually(t, "bob's session in the presence cache", 10*time.Second, func() bool { return c.sessions("bob") == 1 })

	// The SDK's batch presence call: alice and bob online on ios, carol not.
	svc, err := c.svc.Sign("biz", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var terms map[string][]sdk.Terminal
	eventually(t, "alice and bob online for the SDK", 10*time.Second, func() bool {
		terms, err = sdk.New(msg.api, svc).OnlineTerminalsOf(context.Background(), []string{"alice", "bob", "carol", "bob"})
		return err == nil && len(terms) == 2
	})
	if len(terms["alice"]) != 1 || terms["alice"][0].DeviceID != "alice-phone" || terms["alice"][0].Terminal != "ios" ||
		len(terms["bob"]) != 1 || terms["bob"][0].DeviceID != "bob-phone" || terms["carol"] != nil {
		t.Fatalf("OnlineTerminalsOf: %+v", terms)
	}
	var ae *sdk.APIError
	if _, err := sdk.New(msg.api, c.token("alice")).OnlineTerminalsOf(context.Background(), []string{"bob"}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("a user token asked presence: %v", err)
	}
	res2, err := c.send(msg, "alice", "bob", protocol.TypeText, &protocol.Body{Text: "hi again"})
	if err != nil {
		t.Fatal(err)
	}
	r.await(t, 30*time.Second, res2.MsgID+":after_send")
	eventually(t, "bob gets hi again", 20*time.Second, func() bool {
		_, _, ok := bob.event(func(e protocol.Event) bool { return e.Message != nil && e.Message.MsgID == res2.MsgID })
		return ok
	})
	// The recall record is produced after res2's batch was formed (its
	// after_send was delivered), so its event comes in a later batch of the
	// same partition: once it is here, res2's batch is complete.
	if err := c.api(msg, "alice", "alice-phone").Recall(context.Background(), conv, *res2.Seq); err != nil {
		t.Fatal(err)
	}
	recallID := conv + ":" + strconv.FormatInt(*res2.Seq, 10) + ":after_recall"
	if ev := r.await(t, 30*time.Second, recallID)[recallID]; ev.From != "alice" || ev.RefSeq != *res2.Seq {
		t.Fatalf("after_recall: %s", jsonOf(ev))
	}
	r.mu.Lock()
	n := r.attempts[res2.MsgID+":offline_message"]
	r.mu.Unlock()
	if n != 0 {
		t.Fatal("offline_message sent for a message whose recipient was online")
	}

	// alice leaves: user_offline.
	alice.Close()
	r.awaitType(t, 30*time.Second, config.WebhookUserOffline, "alice")

	// Signatures: every request verified; replays tampered or stale fail.
	r.mu.Lock()
	bad, caps := r.badSigs, append([]capture(nil), r.captured...)
	r.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d deliveries failed signature verification", bad)
	}
	if len(caps) == 0 {
		t.Fatal("nothing captured")
	}
	cp := caps[0]
	for _, tc := range []struct {
		name   string
		body   []byte
		now    time.Time
		status int
	}{
		{"as sent", cp.body, time.Now(), http.StatusNoContent},
		{"tampered", bytes.Replace(cp.body, []byte(`"alice"`), []byte(`"mallory"`), 1), time.Now(), http.StatusUnauthorized},
		{"stale (replayed 10 minutes later)", cp.body, time.Now().Add(10 * time.Minute), http.StatusUnauthorized},
	} {
		h := *r.handler
		h.Now = func() time.Time { return tc.now }
		h.OnEvent = func(context.Context, sdk.WebhookEvent) error { return nil }
		req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(tc.body))
		req.Header = cp.header.Clone()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("replay %s: %d, want %d", tc.name, rec.Code, tc.status)
		}
	}
	if cp.header.Get(wire.HeaderIdempotencyKey) == "" || cp.header.Get(wire.HeaderAttempt) == "" {
		t.Errorf("delivery headers: %v", cp.header)
	}
	_ = testdeps.Unique
}

// awaitType waits for an accepted event of type typ for user.
func (r *receiver) awaitType(t *testing.T, timeout time.Duration, typ, user string) sdk.WebhookEvent {
	t.Helper()
	var out sdk.WebhookEvent
	eventually(t, typ+" of "+user, timeout, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, id := range r.order {
			if ev := r.accepted[id]; ev.Type == typ && ev.UserID == user {
				out = ev
				return true
			}
		}
		return false
	})
	return out
}
