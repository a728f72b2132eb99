package message_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

// Undecodable records go to the dead-letter topic with the reason and never
// block their partition.
func TestDeadLetter(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t, server.RoleAll)
	p := e.producer(t)
	conv := model.ConvID("alice", "bob")
	for _, bad := range []string{`not json`, `{"v":1,"kind":"poke","conv_id":"p:alice:bob","from":"alice","at_ms":1}`, `{"v":1,"kind":"read","conv_id":"p:alice:bob","from":"carol","at_ms":1}`} {
		if _, _, err := p.Produce(conv, []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	after := e.send(t, "alice", text("bob", "after", "behind the bad records"))
	e.waitPersisted(t, conv, 1)
	h := e.history(t, "bob", conv, 10)
	if len(h) != 1 || h[0].Message.MsgID != after.MsgID {
		t.Fatalf("history %+v", h)
	}
	c, err := sarama.NewConsumer(e.cfg.Kafka.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(e.cfg.DLQTopic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i := range 3 {
		select {
		case m := <-pc.Messages():
			var reason string
			for _, h := range m.Headers {
				if string(h.Key) == "reason" {
					reason = string(h.Value)
				}
			}
			if reason == "" {
				t.Fatalf("dead letter %d has no reason", i)
			}
			t.Logf("dead letter %d: %s", i, reason)
		case <-time.After(30 * time.Second):
			t.Fatalf("dead letter %d missing", i)
		}
	}
}

// A backlog of records acknowledged under a higher size limit is stored
// after the limit was lowered (IM_MAX_MESSAGE_BYTES is the API's limit for
// new sends, not the pipeline's for records already acked), while the API
// refuses a new send of the same size.
func TestLoweredLimitKeepsTheBacklog(t *testing.T) {
	e := newEnv(t, 1, func(c *cfgT) { c.MaxMessageBytes = 256 })
	conv := model.ConvID("alice", "bob")
	big := strings.Repeat("x", 8<<10)
	for i := range 3 {
		produceRecord(t, e, record("alice", "bob", fmt.Sprint("big-", i), big, time.Now()))
	}
	e.start(t, server.RoleAll)
	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), text("bob", "big-new", big))
	if r.Status != 413 || r.Code() != protocol.ErrTooLarge {
		t.Fatalf("a new send over the lowered limit: %d %s, want 413", r.Status, r.Body)
	}
	e.waitPersisted(t, conv, 3)
	if h := e.history(t, "bob", conv, 10); len(h) != 3 || h[0].Message.Body.Text != big {
		t.Fatalf("history holds %d of the 3 acked large messages", len(h))
	}
}

// The pipeline refuses a topic whose stored state it cannot come from: a
// persisted offset beyond the log's end (the topic was re-created), or
// another topic id.
func TestTopicRecreationGuard(t *testing.T) {
	e := newEnv(t, 1)
	a, err := mlog.NewAdmin(e.cfg.Kafka, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	info, err := a.CheckTopic(e.cfg.Topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID == "" || info.ID == "00000000-0000-0000-0000-000000000000" {
		t.Logf("broker reports no topic id (%q); only the offset guard applies", info.ID)
	}
	run := func(topicID string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := &pipeline.Consumer{Kafka: e.cfg.Kafka, ClientID: "guard", Guard: e.st, Grace: time.Second,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Processor: &pipeline.Processor{Store: e.st, Router: pipeline.NopRouter{}, TopicID: topicID,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		return c.Run(ctx)
	}
	// Stored offset 500 on an empty log.
	if err := e.st.SetPartitionState(t.Context(), 0, info.ID, 500); err != nil {
		t.Fatal(err)
	}
	if err := run(info.ID); !errors.Is(err, pipeline.ErrTopicRecreated) {
		t.Fatalf("offset beyond the log end: %v", err)
	}
	// Another topic id.
	e2 := newEnv(t, 1)
	if err := e2.st.SetPartitionState(t.Context(), 0, "another-topic-id", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e2.producer(t).Produce("p:a:b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := func() error {
		c := &pipeline.Consumer{Kafka: e2.cfg.Kafka, ClientID: "guard", Guard: e2.st, Grace: time.Second,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Processor: &pipeline.Processor{Store: e2.st, Router: pipeline.NopRouter{}, TopicID: "this-topic-id",
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return c.Run(ctx)
	}(); !errors.Is(err, pipeline.ErrTopicRecreated) {
		t.Fatalf("other topic id: %v", err)
	}
}

// flakyGuard fails its first fails reads, as a Cassandra read timeout does
// under load, then answers from the store.
type flakyGuard struct {
	pipeline.GuardStore
	fails atomic.Int32
}

func (g *flakyGuard) PartitionState(ctx context.Context, part int32) (string, int64, bool, error) {
	if g.fails.Add(-1) >= 0 {
		return "", 0, false, errors.New("gocql: Operation timed out for read (transient)")
	}
	return g.GuardStore.PartitionState(ctx, part)
}

// A start-up check that could not be made is not a re-created topic: the
// consumer joins again and consumes, instead of stopping the pipeline.
func TestGuardTransientErrorNotFatal(t *testing.T) {
	e := newEnv(t, 1)
	conv := model.ConvID("alice", "bob")
	rec := model.Record{Kind: protocol.KindMessage, ConvID: conv, From: "alice", AtMs: time.Now().UnixMilli(),
		MsgID: "m-guard", ClientMsgID: "c-guard", Type: protocol.TypeText, Body: &protocol.Body{Text: "hi"}}
	v, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.producer(t).Produce(conv, v); err != nil {
		t.Fatal(err)
	}
	g := &flakyGuard{GuardStore: e.st}
	g.fails.Store(2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &pipeline.Consumer{Kafka: e.cfg.Kafka, ClientID: "guard", Guard: g, Grace: time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Processor: &pipeline.Processor{Store: e.st, Router: pipeline.NopRouter{},
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	msgtest.Eventually(t, 60*time.Second, "record persisted after the failed checks", func() bool {
		select {
		case err := <-done:
			t.Fatalf("consumer stopped after a transient check error: %v", err)
		default:
		}
		_, ok, err := e.st.Message(context.Background(), conv, 0)
		return err == nil && ok
	})
	if g.fails.Load() >= 0 {
		t.Fatalf("the guard was not retried (fails left %d)", g.fails.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("consumer: %v", err)
	}
}
