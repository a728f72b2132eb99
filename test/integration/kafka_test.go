package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/test/testdeps"
)

func kafkaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_1_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Return.Successes = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	return cfg
}

// collector is a consumer-group handler that marks and commits every record
// it sees, then reports it on a channel.
type collector struct {
	got chan *sarama.ConsumerMessage
}

func (collector) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (collector) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c collector) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		s.MarkMessage(m, "")
		s.Commit() // synchronous: the offset is stored before we report
		select {
		case c.got <- m:
		case <-s.Context().Done():
			return nil
		}
	}
	return nil
}

func TestKafkaIdempotentProduceAndCommittedGroup(t *testing.T) {
	brokers := testdeps.Kafka(t)
	cfg := kafkaConfig()
	topic := testdeps.Unique("it_topic")
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	t.Cleanup(func() { _ = admin.DeleteTopic(topic) })
	awaitLeaders(t, admin, topic, 3)

	producer, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	const n = 30
	for i := 0; i < n; i++ {
		_, off, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%5)), Value: sarama.StringEncoder(fmt.Sprint(i)),
		})
		if err != nil || off < 0 {
			t.Fatalf("send %d: offset %d, %v", i, off, err)
		}
	}
	_ = producer.Close()

	group := testdeps.Unique("it_group")
	seen := consumeN(t, brokers, cfg, group, topic, n)
	if len(seen) != n {
		t.Fatalf("first consumer saw %d distinct records, want %d", len(seen), n)
	}

	// Re-join the group: every record was committed, so nothing comes back.
	// A sentinel produced now must be the first record the new member sees.
	producer, err = sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k0"), Value: sarama.StringEncoder("sentinel")}); err != nil {
		t.Fatalf("send sentinel: %v", err)
	}
	again := consumeN(t, brokers, cfg, group, topic, 1)
	for v := range again {
		if v != "sentinel" {
			t.Fatalf("re-joined member got already-committed record %q", v)
		}
	}
}

// consumeN joins group and returns the values of the first n records.
func consumeN(t *testing.T, brokers []string, cfg *sarama.Config, group, topic string, n int) map[string]bool {
	t.Helper()
	cg, err := sarama.NewConsumerGroup(brokers, group, cfg)
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := collector{got: make(chan *sarama.ConsumerMessage)}
	done := make(chan struct{})
	var lastErr atomic.Value // the last error of a session, for the timeout message
	go func() {
		defer close(done)
		// A session may end with an error a consumer must ride out (the
		// coordinator not available yet while __consumer_offsets is
		// created, a rebalance): join again, as the pipeline does.
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
				lastErr.Store(err)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case m := <-h.got:
			if seen[string(m.Value)] {
				t.Fatalf("record %q delivered twice", m.Value)
			}
			seen[string(m.Value)] = true
		case <-ctx.Done():
			t.Fatalf("timed out after %d of %d records (last session error: %v)", len(seen), n, lastErr.Load())
		}
	}
	cancel()
	<-done
	if err := cg.Close(); err != nil {
		t.Fatalf("close group: %v", err)
	}
	return seen
}

// awaitLeaders waits until every partition of a topic just created has a
// leader: until then a produce answers UNKNOWN_TOPIC_OR_PARTITION or
// LEADER_NOT_AVAILABLE, which the producer retries only briefly.
func awaitLeaders(t *testing.T, admin sarama.ClusterAdmin, topic string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := admin.DescribeTopics([]string{topic})
		if err == nil && len(md) == 1 && md[0].Err == sarama.ErrNoError && len(md[0].Partitions) == partitions {
			ready := true
			for _, p := range md[0].Partitions {
				ready = ready && p.Err == sarama.ErrNoError && p.Leader >= 0
			}
			if ready {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: partitions without a leader 30s after creation (%v)", topic, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
