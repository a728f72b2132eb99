//go:build linux

package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

// rawSend posts a send and returns the status and decoded answer (the
// refusal's reason field is not in client.APIError).
func (c *cluster) rawSend(t *testing.T, msg *proc, from, to, clientMsgID, text string, attempt int) (int, map[string]any, time.Duration) {
	t.Helper()
	b, _ := json.Marshal(protocol.SendRequest{To: to, ClientMsgID: clientMsgID, Type: protocol.TypeText,
		Body: &protocol.Body{Text: text}, Attempt: attempt})
	req, _ := http.NewRequest(http.MethodPost, msg.api+"/v1/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.token(from))
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	took := time.Since(t0)
	out := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, took
}

// TestBeforeSend: a refusal reaches the client with its reason and stores
// nothing; a rewrite is what is stored, pushed and kept in history (and a
// retry of it is recognised); a timeout lets the send through fail-open and
// refuses it fail-closed, within the strict timeout.
func TestBeforeSend(t *testing.T) {
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	r.beforeSend = func(req sdk.BeforeSend) (sdk.BeforeSendAnswer, time.Duration) {
		text := req.Body.Text
		switch {
		case strings.HasPrefix(text, "refuse"):
			return sdk.BeforeSendAnswer{Action: sdk.ActionRefuse, Reason: "not_friends", Message: "you are not friends"}, 0
		case strings.HasPrefix(text, "rewrite"):
			return sdk.BeforeSendAnswer{Action: sdk.ActionReplace, Body: &protocol.Body{Text: strings.Replace(text, "darn", "****", 1)}}, 0
		case strings.HasPrefix(text, "slow"):
			return sdk.BeforeSendAnswer{Action: sdk.ActionRefuse, Reason: "too_late"}, 3 * time.Second
		}
		return sdk.BeforeSendAnswer{Action: sdk.ActionAllow}, 0
	}
	hook := []string{config.EnvWebhookBeforeSendURL + "=" + r.srv.URL + "/before", config.EnvWebhookBeforeSendTimeout + "=300ms"}
	open := c.startMessage("message-open", false, append(hook, config.EnvWebhookBeforeSendOnFailure+"=open")...)
	closed := c.startMessage("message-closed", false, append(hook, config.EnvWebhookBeforeSendOnFailure+"=closed")...)
	push := c.startPush("push-1", open)
	bob := c.connect(open, push, "bob", "bob-phone")
	eventually(t, "bob online", 10*time.Second, func() bool { return c.sessions("bob") == 1 })
	conv := model.ConvID("alice", "bob")
	got := func(text string) func(protocol.Event) bool {
		return func(e protocol.Event) bool {
			return e.ConvID == conv && e.Kind == protocol.KindMessage && e.Message.Body != nil && e.Message.Body.Text == text
		}
	}
	// marker sends an allowed message and waits until bob has it: every
	// earlier send of this conversation that was produced is before it in
	// the conversation's order, so bob has it too.
	marker := func(t *testing.T) {
		t.Helper()
		text := testdeps.Unique("marker")
		if st, ans, _ := c.rawSend(t, open, "alice", "bob", testdeps.Unique("c"), text, 1); st != 200 {
			t.Fatalf("marker send: %d %v", st, ans)
		}
		eventually(t, "bob gets "+text, 20*time.Second, func() bool { _, _, ok := bob.event(got(text)); return ok })
	}

	t.Run("Refuse", func(t *testing.T) {
		for _, msg := range []*proc{open, closed} {
			st, ans, _ := c.rawSend(t, msg, "alice", "bob", testdeps.Unique("c"), "refuse me", 1)
			if st != http.StatusForbidden || ans["code"] != "refused" || ans["reason"] != "not_friends" || ans["message"] != "not_friends: you are not friends" {
				t.Fatalf("%s: refusal answered %d %v", msg.name, st, ans)
			}
		}
		marker(t)
		if _, _, ok := bob.event(got("refuse me")); ok {
			t.Fatal("a refused message reached bob")
		}
	})

	t.Run("Rewrite", func(t *testing.T) {
		id := testdeps.Unique("c")
		st, ans, _ := c.rawSend(t, open, "alice", "bob", id, "rewrite darn it", 1)
		if st != 200 {
			t.Fatalf("rewrite: %d %v", st, ans)
		}
		eventually(t, "bob gets the rewritten text", 20*time.Second, func() bool { _, _, ok := bob.event(got("rewrite **** it")); return ok })
		if _, _, ok := bob.event(got("rewrite darn it")); ok {
			t.Fatal("bob got the original text")
		}
		// A retry with the client's original body is asked again, rewritten
		// the same way, and recognised as the stored message.
		eventually(t, "the retry finds the stored message", 20*time.Second, func() bool {
			st, ans, _ = c.rawSend(t, open, "alice", "bob", id, "rewrite darn it", 2)
			return st == 200 && ans["duplicate"] == true
		})
		if ans["msg_id"] != model.MessageID("alice", id) {
			t.Fatalf("retry answered %v", ans)
		}
		var h struct{ Messages []protocol.Event }
		if err := c.api(open, "alice", "alice-web").Get(context.Background(), "/v1/conversations/"+conv+"/messages", &h); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range h.Messages {
			if e.Message.Body != nil && strings.HasPrefix(e.Message.Body.Text, "rewrite") {
				n++
				if e.Message.Body.Text != "rewrite **** it" {
					t.Fatalf("history has %q", e.Message.Body.Text)
				}
			}
		}
		if n != 1 {
			t.Fatalf("history has %d rewritten messages, want 1", n)
		}
	})

	t.Run("TimeoutFailOpen", func(t *testing.T) {
		st, ans, took := c.rawSend(t, open, "alice", "bob", testdeps.Unique("c"), "slow open", 1)
		if st != 200 {
			t.Fatalf("fail-open timeout answered %d %v", st, ans)
		}
		if took > 2*time.Second {
			t.Fatalf("fail-open send took %v (timeout 300ms)", took)
		}
		eventually(t, "bob gets the fail-open message", 20*time.Second, func() bool { _, _, ok := bob.event(got("slow open")); return ok })
	})

	t.Run("TimeoutFailClosed", func(t *testing.T) {
		st, ans, took := c.rawSend(t, closed, "alice", "bob", testdeps.Unique("c"), "slow closed", 1)
		if st != http.StatusServiceUnavailable || ans["code"] != protocol.ErrUnavailable {
			t.Fatalf("fail-closed timeout answered %d %v", st, ans)
		}
		if took > 2*time.Second {
			t.Fatalf("fail-closed send took %v (timeout 300ms)", took)
		}
		marker(t)
		if _, _, ok := bob.event(got("slow closed")); ok {
			t.Fatal("a fail-closed timed-out message reached bob")
		}
	})

	t.Run("ReceiverDownFailClosed", func(t *testing.T) {
		down := c.startMessage("message-down", false, config.EnvWebhookBeforeSendURL+"=http://127.0.0.1:1/before",
			config.EnvWebhookBeforeSendOnFailure+"=closed")
		st, ans, _ := c.rawSend(t, down, "alice", "bob", testdeps.Unique("c"), "nobody listens", 1)
		if st != http.StatusServiceUnavailable || ans["code"] != protocol.ErrUnavailable {
			t.Fatalf("receiver down, fail-closed: %d %v", st, ans)
		}
	})

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSigs != 0 {
		t.Fatalf("%d before_send requests failed signature verification", r.badSigs)
	}
}
