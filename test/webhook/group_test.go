//go:build linux

package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestGroupEvents: a group message gets one after_send and an
// offline_message for each member without a connected device (here
// carol and dan, not bob, who is online, nor the sender), each with its
// own idempotency key.
func TestGroupEvents(t *testing.T) {
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	msg := c.startMessage("message-1", true, config.EnvWebhookURL+"="+r.srv.URL+"/events", config.EnvWebhookTimeout+"=2s")
	push := c.startPush("push-1", msg)
	c.connect(msg, push, "alice", "alice-phone")
	c.connect(msg, push, "bob", "bob-phone")
	eventually(t, "alice and bob in the presence cache", 15*time.Second, func() bool { return c.sessions("alice") == 1 && c.sessions("bob") == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owner := &sdk.Client{BaseURL: msg.api, Token: c.token("alice")}
	if _, err := owner.CreateGroup(ctx, "alice", sdk.NewGroup{GroupID: "crew", Name: "Crew", Members: []string{"bob", "carol", "dan"}}); err != nil {
		t.Fatal(err)
	}
	res, err := owner.SendGroupMessage(ctx, "alice", sdk.GroupMessage{GroupID: "crew", ClientMsgID: "g-1", Type: protocol.TypeText,
		Body: protocol.Body{Text: "standup in 5", Mentions: []string{"carol"}}})
	if err != nil {
		t.Fatal(err)
	}
	send, carol, dan := res.MsgID+":after_send", res.MsgID+":offline_message:carol", res.MsgID+":offline_message:dan"
	evs := r.await(t, 30*time.Second, send, carol, dan)
	if ev := evs[send]; ev.ConvID != "g:crew" || ev.From != "alice" || res.Seq == nil || ev.Seq != *res.Seq || ev.Message == nil ||
		ev.Message.Body == nil || len(ev.Message.Body.Mentions) != 1 {
		t.Fatalf("after_send: %s", jsonOf(ev))
	}
	for id, user := range map[string]string{carol: "carol", dan: "dan"} {
		if ev := evs[id]; ev.UserID != user || ev.ConvID != "g:crew" || ev.Seq != *res.Seq {
			t.Fatalf("%s: %s", id, jsonOf(ev))
		}
	}
	// A later message's after_send comes after every event of the first
	// one (same partition, later batch or later in the batch): by then an
	// offline_message for bob or alice would have arrived.
	res2, err := owner.SendGroupMessage(ctx, "alice", sdk.GroupMessage{GroupID: "crew", ClientMsgID: "g-2", Type: protocol.TypeText,
		Body: protocol.Body{Text: "now"}})
	if err != nil {
		t.Fatal(err)
	}
	r.await(t, 30*time.Second, res2.MsgID+":after_send")
	for _, u := range []string{"alice", "bob"} {
		if ev, ok := r.get(res.MsgID + ":offline_message:" + u); ok {
			t.Fatalf("offline_message for online %s: %s", u, jsonOf(ev))
		}
	}
}
