package message_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

func (e *env) post(t *testing.T, as, path string, body any) msgtest.Resp {
	t.Helper()
	return e.c.Do(t, "POST", path, e.user(t, as), body)
}

// Recall: by the sender within the window only; content gone from every
// read; a recall event routed to both sides.
func TestRecall(t *testing.T) {
	// The window only has to outlast the steps before the recall (waiting
	// for persistence may take up to a minute on a loaded box); expiry is
	// tested by moving the API's clock past it.
	const window = 10 * time.Minute
	e := newEnv(t, 2, func(c *config.Message) { c.RecallWindow = window })
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	m1 := e.send(t, "alice", text("bob", "r1", "oops"))
	m2 := e.send(t, "alice", text("bob", "r2", "keep me"))
	e.waitPersisted(t, conv, 2)
	path := "/v1/conversations/" + conv + "/recall"

	if r := e.post(t, "bob", path, map[string]int64{"seq": *m1.Seq}); r.Status != 403 || r.Code() != protocol.ErrForbidden {
		t.Fatalf("recall by the recipient: %d %s", r.Status, r.Body)
	}
	if r := e.post(t, "alice", path, map[string]int64{"seq": *m1.Seq + 1000}); r.Status != 404 || r.Code() != protocol.ErrNotFound {
		t.Fatalf("recall of no message: %d %s", r.Status, r.Body)
	}
	r := e.post(t, "alice", path, map[string]int64{"seq": *m1.Seq})
	if r.Status != 200 {
		t.Fatalf("recall: %d %s", r.Status, r.Body)
	}
	var rr api.RecallResponse
	r.Decode(t, &rr)
	// The whole recall record, not the history row alone: the recall
	// cells of both feeds are written at the same time as it.
	e.waitConsumed(t)
	if ev, ok, err := e.st.Message(t.Context(), conv, *m1.Seq); err != nil || !ok || !ev.Message.Recalled {
		t.Fatalf("recall persisted, but the message is %+v (found %v, err %v)", ev.Message, ok, err)
	}
	for _, u := range []string{"alice", "bob"} {
		h := e.history(t, u, conv, 10)
		if len(h) != 2 || !h[0].Message.Recalled || h[0].Message.Body != nil || h[1].Message.Recalled || h[1].Message.Body == nil {
			t.Fatalf("history of %s after recall: %+v %+v", u, h[0].Message, h[1].Message)
		}
		evs, _ := e.syncAll(t, u, "", 100)
		var sawRecall bool
		for _, ev := range evs {
			if ev.Kind == protocol.KindMessage && ev.Seq == *m1.Seq && (ev.Message.Body != nil || !ev.Message.Recalled) {
				t.Fatalf("sync of %s still shows recalled content", u)
			}
			if ev.Kind == protocol.KindRecall && ev.RefSeq == *m1.Seq && ev.Seq == *rr.EventSeq {
				sawRecall = true
			}
		}
		if !sawRecall {
			t.Fatalf("sync of %s has no recall event", u)
		}
	}
	msgtest.Eventually(t, 10*time.Second, "recall routed", func() bool {
		for _, x := range e.router.All() {
			if x.Event.Kind == protocol.KindRecall && x.Event.RefSeq == *m1.Seq && len(x.Users) == 2 {
				return true
			}
		}
		return false
	})
	// Recalling twice is harmless and produces nothing.
	if r := e.post(t, "alice", path, map[string]int64{"seq": *m1.Seq}); r.Status != 200 {
		t.Fatalf("second recall: %d %s", r.Status, r.Body)
	}
	// After the window (the API's clock moved past it): refused with
	// recall_expired, message intact.
	e.skew.Store(int64(window + time.Second))
	if r := e.post(t, "alice", path, map[string]int64{"seq": *m2.Seq}); r.Status != 403 || r.Code() != protocol.ErrRecallExpired {
		t.Fatalf("late recall: %d %s", r.Status, r.Body)
	}
	if ev, _, _ := e.st.Message(t.Context(), conv, *m2.Seq); ev.Message.Recalled {
		t.Fatal("late recall changed the message")
	}
}

// The read cursor never moves backwards: not through the API, and not when
// read records land out of order.
func TestReadCursorMonotonic(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	var seqs []int64
	for i := range 5 {
		seqs = append(seqs, *e.send(t, "alice", text("bob", fmt.Sprint("m", i), "hi")).Seq)
	}
	e.waitPersisted(t, conv, 5)
	path := "/v1/conversations/" + conv + "/read"
	readSeq := func() int64 {
		c, _, err := e.st.Conversation(t.Context(), "bob", conv)
		if err != nil {
			t.Fatal(err)
		}
		return c.ReadSeq
	}
	r := e.post(t, "bob", path, map[string]int64{"seq": seqs[3]})
	var rr api.ReadResponse
	r.Decode(t, &rr)
	if r.Status != 200 || !rr.Changed {
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
	msgtest.Eventually(t, 30*time.Second, "read persisted", func() bool { return readSeq() == seqs[3] })
	r = e.post(t, "bob", path, map[string]int64{"seq": seqs[1]})
	r.Decode(t, &rr)
	if r.Status != 200 || rr.Changed || rr.ReadSeq != seqs[3] {
		t.Fatalf("backwards read: %d %s", r.Status, r.Body)
	}
	if r := e.post(t, "bob", path, map[string]int64{"seq": seqs[4] + 100}); r.Status != 400 {
		t.Fatalf("read beyond the end: %d %s", r.Status, r.Body)
	}
	// Out-of-order read records straight into the log: the max wins.
	p := e.producer(t)
	for _, ref := range []int64{seqs[4], seqs[0]} {
		rec := model.Record{Kind: protocol.KindRead, ConvID: conv, From: "bob", AtMs: time.Now().UnixMilli(), RefSeq: ref}
		v, _ := rec.Encode()
		if _, _, err := p.Produce(conv, v); err != nil {
			t.Fatal(err)
		}
	}
	marker := e.send(t, "bob", text("alice", "marker", "done"))
	// Both rows: the marker updates alice's and bob's at the same time.
	e.waitConsumed(t)
	if got := readSeq(); got != *marker.Seq {
		// bob sent the marker, which also reads up to it
		t.Fatalf("bob's read cursor %d, want %d", got, *marker.Seq)
	}
	c, _, _ := e.st.Conversation(t.Context(), "alice", conv)
	if c.PeerReadSeq != seqs[4] {
		t.Fatalf("alice sees bob's read cursor at %d, want %d (the max)", c.PeerReadSeq, seqs[4])
	}
	// Delivered acks are coalesced to the max per conversation, user and
	// device; the receipt is the max of the devices'.
	internal := msgtest.Token(t, e.keys.Internal, "push-1")
	acks := protocol.DeliveredBatch{Acks: []protocol.DeliveredAck{
		{ConvID: conv, UserID: "bob", DeviceID: "phone", Seq: seqs[2]},
		{ConvID: conv, UserID: "bob", DeviceID: "phone", Seq: seqs[4]},
		{ConvID: conv, UserID: "bob", DeviceID: "web", Seq: seqs[1]},
	}}
	r = e.c.Do(t, "POST", protocol.DeliveredPath, internal, acks)
	var dr api.DeliveredResponse
	r.Decode(t, &dr)
	if r.Status != 200 || dr.Records != 2 {
		t.Fatalf("delivered: %d %s, want 2 records (phone's and web's highest)", r.Status, r.Body)
	}
	msgtest.Eventually(t, 30*time.Second, "delivered persisted", func() bool {
		c, _, _ := e.st.Conversation(t.Context(), "alice", conv)
		return c.PeerDeliveredSeq == seqs[4]
	})
}
