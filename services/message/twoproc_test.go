package message_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/test/testdeps"
)

// startSecond runs a second message process of e's tier (same topic,
// keyspace and consumer group).
func (e *env) startSecond(t *testing.T) msgtest.Client {
	t.Helper()
	p := msgtest.Start(t, e.cfg, server.RoleAll, e.router)
	return msgtest.Client{URL: p.URL}
}

// Retries of one client_msg_id through two message processes, before and
// after both restarted, store one message under one msg_id; a retry through
// either answers it from the store once it is there.
func TestRetriesThroughTwoProcesses(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, server.RoleAll)
	other := e.startSecond(t)
	conv := model.ConvID("alice", "bob")
	req := text("bob", "c-two", "through two processes")
	clients := []msgtest.Client{e.c, other}
	var ids []string
	for attempt := 1; attempt <= 4; attempt++ {
		r := clients[attempt%2].Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(req, attempt))
		if r.Status != 200 {
			t.Fatalf("attempt %d: %d %s", attempt, r.Status, r.Body)
		}
		var out api.SendResponse
		r.Decode(t, &out)
		ids = append(ids, out.MsgID)
	}
	e.waitPersisted(t, conv, 1)
	// Both processes down and up again: nothing of the first run in memory.
	if err := e.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	e.start(t, server.RoleAll)
	other = e.startSecond(t)
	for i, c := range []msgtest.Client{e.c, other} {
		r := c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(req, 5+i))
		var out api.SendResponse
		r.Decode(t, &out)
		if r.Status != 200 || !out.Duplicate || out.Seq == nil {
			t.Fatalf("retry %d after the restart: %d %s, want the stored message", 5+i, r.Status, r.Body)
		}
		ids = append(ids, out.MsgID)
	}
	e.waitConsumed(t)
	for _, id := range ids {
		if id != model.MessageID("alice", "c-two") {
			t.Fatalf("msg_ids %v: want %s everywhere", ids, model.MessageID("alice", "c-two"))
		}
	}
	if h := e.history(t, "alice", conv, 100); len(h) != 1 || h[0].Message.MsgID != ids[0] {
		t.Fatalf("history %+v: want the message once", h)
	}
}

// The hung-broker case: the first attempt's produce is held by a broker
// that stops answering (SIGSTOP) and fails on the client's side within the
// send deadline (its outcome unknown: the request may still be appended
// when the broker runs again); its retry goes through the other process.
// One message is stored. (A retry landing before its held original is
// TestCopiesInTheLogStoredOnce.)
func TestHungBrokerStoresOnce(t *testing.T) {
	kafka := testdeps.PrivateKafka(t)
	e := newEnv(t, 1, func(c *config.Message) { c.Kafka.Brokers = kafka.Endpoints })
	e.start(t, server.RoleAll)
	other := e.startSecond(t)
	conv := model.ConvID("alice", "bob")
	e.send(t, "alice", text("bob", "warm-1", "connections up")) // both producers connected
	if r := other.Do(t, "POST", "/v1/messages", e.user(t, "alice"), text("bob", "warm-2", "connections up")); r.Status != 200 {
		t.Fatalf("warm-up through the other process: %d %s", r.Status, r.Body)
	}
	before := e.logEnd(t)
	if err := kafka.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := kafka.Resume(); err != nil {
				t.Error(err)
			}
		}
	}
	defer resume()
	req := text("bob", "c-held", "held by a hung broker")
	// The first attempt must end (the producer is bounded below the send
	// deadline) with an error: its outcome is unknown.
	hc := &http.Client{Timeout: 2 * api.SendDeadline} // a send that never ends fails the test
	t0 := time.Now()
	first := msgtest.Client{URL: e.c.URL, HC: hc}.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(req, 1))
	if first.Status != 503 {
		t.Fatalf("first attempt against a hung broker: %d %s, want 503 (unknown outcome)", first.Status, first.Body)
	}
	t.Logf("the first attempt against the hung broker was answered 503 after %s", time.Since(t0).Round(time.Millisecond))
	// The broker runs again: the held request may still be appended. The
	// retry goes through the other process.
	resume()
	retry := other.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(req, 2))
	for attempt := 3; retry.Status != 200 && attempt < 10; attempt++ {
		retry = other.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(req, attempt))
	}
	if retry.Status != 200 {
		t.Fatalf("retries after the broker came back: %d %s", retry.Status, retry.Body)
	}
	e.waitPersisted(t, conv, 3)
	copies := e.logEnd(t) - before
	h := e.history(t, "alice", conv, 100)
	held := 0
	for _, ev := range h {
		if ev.Message.ClientMsgID == "c-held" {
			held++
			if ev.Message.MsgID != model.MessageID("alice", "c-held") {
				t.Errorf("stored under %s", ev.Message.MsgID)
			}
		}
	}
	t.Logf("the log holds %d copies of the held send", copies)
	if held != 1 || len(h) != 3 {
		t.Fatalf("history holds the held send %d times (%d messages): want once beside the two warm-ups", held, len(h))
	}
}
