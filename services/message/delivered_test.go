package message_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

// A delivered ack beyond the last message of the user's conversation
// produces no receipt, whatever else its batch holds: the pipeline drops it
// (receipt_ignored), alone; acks of real messages, stale ones included,
// keep working. The API produces one record per device without a read.
func TestDeliveredAckBeyondLastMessage(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	var seqs []int64
	for i := range 2 {
		seqs = append(seqs, *e.send(t, "alice", text("bob", fmt.Sprint("m", i), "hi")).Seq)
	}
	row := func(user string) (c struct{ lastSeq, lastMsg, peerDelivered int64 }) {
		s, _, err := e.st.Conversation(t.Context(), user, conv)
		if err != nil {
			t.Fatal(err)
		}
		c.lastSeq, c.lastMsg, c.peerDelivered = s.LastSeq, s.LastMsgSeq, s.PeerDeliveredSeq
		return c
	}
	e.waitConsumed(t)
	if got := row("bob").lastMsg; got != seqs[1] {
		t.Fatalf("bob's last message seq %d, want %d", got, seqs[1])
	}
	internal := msgtest.Token(t, e.keys.Internal, "push-1")
	ack := func(user, device string, seq int64) protocol.DeliveredAck {
		c := conv
		if user == "carol" {
			c = model.ConvID("alice", "carol") // no message in it
		}
		return protocol.DeliveredAck{ConvID: c, UserID: user, DeviceID: device, Seq: seq}
	}

	steps := []struct {
		name             string
		acks             func() []protocol.DeliveredAck
		records, ignored int
		want             int64 // alice's peer_delivered_seq afterwards
	}{
		{"far beyond, beside another device's valid ack and an empty conversation", func() []protocol.DeliveredAck {
			return []protocol.DeliveredAck{ack("bob", "phone", seqs[1]+1_000_000), ack("bob", "web", seqs[0]), ack("carol", "tab", 0)}
		}, 3, 2, seqs[0]},
		{"a seq that exists but is no message (bob's delivered event, in alice's row)", func() []protocol.DeliveredAck {
			return []protocol.DeliveredAck{ack("bob", "phone", row("alice").lastSeq)}
		}, 1, 1, seqs[0]},
		{"the last message", func() []protocol.DeliveredAck {
			return []protocol.DeliveredAck{ack("bob", "phone", seqs[1])}
		}, 1, 0, seqs[1]},
		{"a stale ack is harmless", func() []protocol.DeliveredAck {
			return []protocol.DeliveredAck{ack("bob", "web", seqs[0])}
		}, 1, 0, seqs[1]},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before, ignoredBefore := e.logEnd(t), receiptsIgnored(t)
			r := e.c.Do(t, "POST", protocol.DeliveredPath, internal, protocol.DeliveredBatch{Acks: s.acks()})
			var dr api.DeliveredResponse
			r.Decode(t, &dr)
			if r.Status != 200 || dr.Records != s.records {
				t.Fatalf("delivered: %d %s; want records %d", r.Status, r.Body, s.records)
			}
			if got := e.logEnd(t) - before; got != int64(s.records) {
				t.Fatalf("%d records in the log, want %d", got, s.records)
			}
			// Await the whole record: the next step reads alice's
			// last_seq, which a receipt moves.
			e.waitConsumed(t)
			if got := receiptsIgnored(t) - ignoredBefore; got != float64(s.ignored) {
				t.Fatalf("the pipeline ignored %v receipts, want %d", got, s.ignored)
			}
			if got := row("alice").peerDelivered; got != s.want {
				t.Fatalf("alice's peer_delivered_seq = %d, want %d", got, s.want)
			}
		})
	}
	if c := row("alice"); c.peerDelivered > c.lastMsg {
		t.Fatalf("alice sees delivered up to %d, past the last message %d", c.peerDelivered, c.lastMsg)
	}
	if c, ok, err := e.st.Conversation(t.Context(), "alice", model.ConvID("alice", "carol")); err != nil || ok && c.PeerDeliveredSeq >= 0 {
		t.Fatalf("alice's conversation with carol: %+v, %v; want no receipt", c, err)
	}
}

// receiptsIgnored reads imcluster_pipeline_records_total{result=
// "receipt_ignored"} of this process (the pipeline runs in it).
func receiptsIgnored(t *testing.T) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "imcluster_pipeline_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "receipt_ignored" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no imcluster_pipeline_records_total{result=\"receipt_ignored\"}")
	return 0
}
