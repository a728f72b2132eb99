package mlog_test

import (
	"errors"
	"testing"

	"github.com/imcluster/imcluster/services/message/mlog"
)

// CheckTopic (run by every message process at start-up) refuses a topic
// that allows unclean leader elections, whoever created it; the topics
// bootstrap creates pass.
func TestCheckTopicRefusesUnsafeSettings(t *testing.T) {
	cfg, admin := testTopic(t, "imt_unsafe", 2)
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
