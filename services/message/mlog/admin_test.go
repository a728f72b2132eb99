package mlog_test

import (
	"errors"
	"testing"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/test/testdeps"
)

// CheckTopic (run by every message process at start-up) refuses a topic
// that allows unclean leader elections, whoever created it; the topics
// bootstrap creates pass.
func TestCheckTopicRefusesUnsafeSettings(t *testing.T) {
	cfg := config.Kafka{Brokers: testdeps.Kafka(t), Topic: testdeps.Unique("imt_unsafe"), Partitions: 2, ReplicationFactor: 1}
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
	if info, err := admin.CheckTopic(cfg.Topic, cfg.Partitions); err != nil || info.ReplicationFactor != 1 {
		t.Fatalf("a topic bootstrap created: %+v %v", info, err)
	}
	if err := admin.SetTopicConfig(cfg.Topic, "unclean.leader.election.enable", "true"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CheckTopic(cfg.Topic, cfg.Partitions); !errors.Is(err, mlog.ErrUnsafeTopic) {
		t.Fatalf("a topic with unclean leader elections: %v, want ErrUnsafeTopic", err)
	}
}
