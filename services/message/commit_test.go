package message_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/server"
)

// The pipeline batches the records of every partition it consumes together
// (pipeline/session.go) and marks each partition's last record once its
// rows are written: on real Kafka, the consumer group's committed offset
// of every partition reaches the log's end, so a restart resumes there
// instead of replaying the log.
func TestCommitsEveryPartition(t *testing.T) {
	const partitions = 4
	e := newEnv(t, partitions)
	e.start(t, server.RoleAll)
	// Conversations until every partition holds records (where a
	// conversation lands is its key's hash).
	ends := msgtest.LogEnds(t, e.cfg)
	for i := 0; slices.Contains(ends, 0); i++ {
		if i == 400 {
			t.Fatalf("log ends %v after 400 conversations: a partition got no record", ends)
		}
		e.send(t, fmt.Sprintf("alice-%d", i), text(fmt.Sprintf("bob-%d", i*7919), "k", "hi"))
		ends = msgtest.LogEnds(t, e.cfg)
	}
	admin, err := sarama.NewClusterAdmin(e.cfg.Kafka.Brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	parts := make([]int32, partitions)
	for p := range parts {
		parts[p] = int32(p)
	}
	committed := func() []int64 {
		res, err := admin.ListConsumerGroupOffsets(e.cfg.Kafka.Group, map[string][]int32{e.cfg.Kafka.Topic: parts})
		if err != nil {
			t.Logf("listing committed offsets: %v", err)
			return nil
		}
		out := make([]int64, partitions)
		for _, p := range parts {
			if b := res.GetBlock(e.cfg.Kafka.Topic, p); b != nil {
				out[p] = b.Offset
			}
		}
		return out
	}
	msgtest.Eventually(t, 30*time.Second, fmt.Sprintf("committed offsets at the log ends %v", ends), func() bool {
		return slices.Equal(committed(), ends)
	})
}
