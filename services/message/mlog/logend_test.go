package mlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/test/testdeps"
)

// testTopic creates a topic of its own for t (deleted when t ends) and
// returns its configuration and an admin connection.
func testTopic(t *testing.T, prefix string, partitions int32) (config.Kafka, *mlog.Admin) {
	t.Helper()
	cfg := config.Kafka{Brokers: testdeps.Kafka(t), Topic: testdeps.Unique(prefix), Partitions: partitions, ReplicationFactor: 1}
	admin, err := mlog.NewAdmin(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.EnsureTopic(cfg.Topic, cfg.Partitions, 1, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.DeleteTopic(cfg.Topic); err != nil {
			t.Logf("delete topic: %v", err)
		}
	})
	return cfg, admin
}

// LogEnds reports, per partition, the offset the next record will get —
// one past the last produced — through the producer's own client.
func TestProducerLogEnds(t *testing.T) {
	cfg, _ := testTopic(t, "imt_logend", 3)
	p, err := mlog.NewProducer(cfg, cfg.Topic, "test-logend", 14*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := p.LogEnds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ends) != "[0 0 0]" {
		t.Fatalf("log ends of a new topic: %v, want [0 0 0]", ends)
	}
	want := make([]int64, cfg.Partitions)
	for i := range 20 {
		part, off, err := p.Produce(fmt.Sprint("conv-", i), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		want[part] = max(want[part], off+1)
	}
	if ends, err = p.LogEnds(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ends) != fmt.Sprint(want) {
		t.Fatalf("log ends %v, want %v (one past the last produced per partition)", ends, want)
	}
	// A done context ends the wait.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if _, err := p.LogEnds(done); err == nil {
		t.Error("LogEnds with a done context: no error")
	}
}
