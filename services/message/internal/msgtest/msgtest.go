// Package msgtest sets up isolated real dependencies for the message tier's
// tests: a fresh keyspace and fresh topics per test, dropped afterwards.
package msgtest

import (
	"context"
	"github.com/IBM/sarama"

	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/test/testdeps"
)

// Config returns a message configuration pointing at the test servers with
// a unique keyspace, topic, dead-letter topic and group.
func Config(t testing.TB, partitions int32) config.Message {
	t.Helper()
	m, err := config.LoadMessage(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m.Cassandra.Hosts = testdeps.Cassandra(t)
	m.Kafka.Brokers = testdeps.Kafka(t)
	m.Cassandra.Keyspace = testdeps.Unique("imt")
	m.Kafka.Topic = testdeps.Unique("imt")
	m.Kafka.DLQTopic = m.Kafka.Topic + "_dlq"
	m.Kafka.Group = m.Kafka.Topic + "_g"
	m.Kafka.Partitions = partitions
	m.RecallWindow = 2 * time.Minute
	m.ShutdownGrace = 5 * time.Second
	return m
}

// Keyspace migrates cfg's keyspace and drops it when t ends.
func Keyspace(t testing.TB, cfg config.Message) {
	t.Helper()
	t.Cleanup(func() {
		if err := store.DropKeyspace(cfg.Cassandra, cfg.Cassandra.Keyspace); err != nil {
			t.Logf("drop keyspace %s: %v", cfg.Cassandra.Keyspace, err)
		}
	})
	if err := store.Migrate(cfg.Cassandra); err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

// Topics creates cfg's topics and deletes them when t ends.
func Topics(t testing.TB, cfg config.Message) {
	t.Helper()
	if err := mlog.Bootstrap(cfg.Kafka, "test"); err != nil {
		t.Fatalf("bootstrap topics: %v", err)
	}
	t.Cleanup(func() {
		a, err := mlog.NewAdmin(cfg.Kafka, "test-cleanup")
		if err != nil {
			t.Logf("cleanup admin: %v", err)
			return
		}
		defer a.Close()
		for _, topic := range []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic} {
			if err := a.DeleteTopic(topic); err != nil {
				t.Logf("delete topic %s: %v", topic, err)
			}
		}
		if err := a.DeleteGroup(cfg.Kafka.Group); err != nil {
			t.Logf("delete group %s: %v", cfg.Kafka.Group, err)
		}
	})
}

// Store opens the store of cfg (already migrated) and closes it when t ends.
func Store(t testing.TB, cfg config.Message) *store.Store {
	t.Helper()
	st, err := store.Open(cfg.Cassandra, cfg.Kafka.Topic, int(cfg.Kafka.Partitions))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UseFeedRetention(context.Background(), cfg.FeedRetention); err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// LogEnds returns the end offset of every partition of cfg's topic.
func LogEnds(t testing.TB, cfg config.Message) []int64 {
	t.Helper()
	c, err := sarama.NewClient(cfg.Kafka.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := make([]int64, cfg.Kafka.Partitions)
	for p := range out {
		if out[p], err = c.GetOffset(cfg.Kafka.Topic, int32(p), sarama.OffsetNewest); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
