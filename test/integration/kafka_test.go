package integration

import (
	"context"
	"fmt"
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
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				done <- err
				return
			}
		}
		done <- nil
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
			t.Fatalf("timed out after %d of %d records", len(seen), n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("consume: %v", err)
	}
	if err := cg.Close(); err != nil {
		t.Fatalf("close group: %v", err)
	}
	return seen
}
