package mlog

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/config"
)

// ErrPartitionMismatch is returned when an existing topic's partition count
// differs from the configured one: seq and routing depend on it.
var ErrPartitionMismatch = errors.New("topic partition count differs from configuration")

// ErrUnsafeTopic is returned when an existing topic's settings would let an
// acknowledged record be lost with one broker: acks=all means only "every
// in-sync replica has it", and that is one replica when
// min.insync.replicas is 1; an unclean leader election may elect a replica
// without it.
var ErrUnsafeTopic = errors.New("topic settings would lose acknowledged records")

// TopicInfo describes an existing topic.
type TopicInfo struct {
	ID                string // Kafka topic id; changes when the topic is re-created
	Partitions        int32
	ReplicationFactor int // replicas of partition 0
}

// MinInsyncReplicas is the min.insync.replicas imcluster requires (and
// sets on the topics it creates) for a replication factor: 2 once rf >= 3
// (an acknowledged record is on two brokers, and one broker may be down
// while sends go on), else 1.
func MinInsyncReplicas(rf int) int {
	if rf >= 3 {
		return 2
	}
	return 1
}

// Admin wraps a sarama cluster admin.
type Admin struct {
	ca sarama.ClusterAdmin
}

// NewAdmin connects a cluster admin.
func NewAdmin(cfg config.Kafka, clientID string) (*Admin, error) {
	sc, err := SaramaConfig(cfg, clientID)
	if err != nil {
		return nil, err
	}
	ca, err := sarama.NewClusterAdmin(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("while connecting the Kafka admin: %w", err)
	}
	return &Admin{ca: ca}, nil
}

// Close closes the admin connection.
func (a *Admin) Close() error { return a.ca.Close() }

// Describe returns the topic's id and partition count, or ok=false when it
// does not exist.
func (a *Admin) Describe(topic string) (TopicInfo, bool, error) {
	md, err := a.ca.DescribeTopics([]string{topic})
	if err != nil {
		return TopicInfo{}, false, fmt.Errorf("while describing topic %s: %w", topic, err)
	}
	if len(md) != 1 {
		return TopicInfo{}, false, fmt.Errorf("while describing topic %s: %d answers", topic, len(md))
	}
	switch {
	case errors.Is(md[0].Err, sarama.ErrUnknownTopicOrPartition):
		return TopicInfo{}, false, nil
	case md[0].Err != sarama.ErrNoError:
		return TopicInfo{}, false, fmt.Errorf("while describing topic %s: %w", topic, md[0].Err)
	}
	info := TopicInfo{ID: md[0].Uuid.String(), Partitions: int32(len(md[0].Partitions))}
	for _, p := range md[0].Partitions {
		if p.ID == 0 {
			info.ReplicationFactor = len(p.Replicas)
		}
	}
	return info, true, nil
}

// EnsureTopic creates topic with the given partitions and replication
// factor if it does not exist (idempotent), and refuses an existing topic
// with a different partition count.
func (a *Admin) EnsureTopic(topic string, partitions int32, rf int16, retention string) (created bool, err error) {
	info, ok, err := a.Describe(topic)
	if err != nil {
		return false, err
	}
	if ok {
		if info.Partitions != partitions {
			return false, fmt.Errorf("%w: %s has %d partitions, configured %d", ErrPartitionMismatch, topic, info.Partitions, partitions)
		}
		return false, nil
	}
	detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: rf, ConfigEntries: map[string]*string{}}
	if retention != "" {
		detail.ConfigEntries["retention.ms"] = &retention
	}
	minISR, unclean := fmt.Sprint(MinInsyncReplicas(int(rf))), "false"
	detail.ConfigEntries["min.insync.replicas"] = &minISR
	detail.ConfigEntries["unclean.leader.election.enable"] = &unclean
	err = a.ca.CreateTopic(topic, detail, false)
	if errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return a.EnsureTopic(topic, partitions, rf, retention)
	}
	if err != nil {
		return false, fmt.Errorf("while creating topic %s: %w", topic, err)
	}
	// Wait until the metadata shows every partition with a leader: before
	// that, a produce answers UNKNOWN_TOPIC_OR_PARTITION or
	// LEADER_NOT_AVAILABLE, which the producer retries only briefly.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if a.led(topic, partitions) {
			return true, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true, fmt.Errorf("topic %s created but not every partition has a leader after 30s", topic)
}

// led reports whether topic shows partitions partitions, each with a leader.
func (a *Admin) led(topic string, partitions int32) bool {
	md, err := a.ca.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || md[0].Err != sarama.ErrNoError || int32(len(md[0].Partitions)) != partitions {
		return false
	}
	for _, p := range md[0].Partitions {
		if p.Err != sarama.ErrNoError || p.Leader < 0 {
			return false
		}
	}
	return true
}

// CheckTopic verifies topic exists with the configured partition count.
func (a *Admin) CheckTopic(topic string, partitions int32) (TopicInfo, error) {
	info, ok, err := a.Describe(topic)
	if err != nil {
		return info, err
	}
	if !ok {
		return info, fmt.Errorf("topic %s does not exist (run: imcluster bootstrap)", topic)
	}
	if info.Partitions != partitions {
		return info, fmt.Errorf("%w: %s has %d partitions, configured %d", ErrPartitionMismatch, topic, info.Partitions, partitions)
	}
	return info, a.checkDurability(topic, info.ReplicationFactor)
}

// checkDurability refuses a topic (created by bootstrap, Strimzi or a
// human) whose min.insync.replicas is below MinInsyncReplicas of its
// replication factor, or that allows unclean leader elections.
func (a *Admin) checkDurability(topic string, rf int) error {
	entries, err := a.ca.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic,
		ConfigNames: []string{"min.insync.replicas", "unclean.leader.election.enable"}})
	if err != nil {
		return fmt.Errorf("while reading the settings of topic %s: %w", topic, err)
	}
	return checkSettings(topic, rf, entries)
}

func checkSettings(topic string, rf int, entries []sarama.ConfigEntry) error {
	for _, e := range entries {
		switch e.Name {
		case "min.insync.replicas":
			var n int
			if _, err := fmt.Sscan(e.Value, &n); err != nil || n < MinInsyncReplicas(rf) {
				return fmt.Errorf("%w: %s has min.insync.replicas=%s with replication factor %d, want >= %d",
					ErrUnsafeTopic, topic, e.Value, rf, MinInsyncReplicas(rf))
			}
		case "unclean.leader.election.enable":
			if e.Value != "false" {
				return fmt.Errorf("%w: %s has unclean.leader.election.enable=%s, want false", ErrUnsafeTopic, topic, e.Value)
			}
		}
	}
	return nil
}

// DeleteTopic deletes topic (tests).
func (a *Admin) DeleteTopic(topic string) error {
	if err := a.ca.DeleteTopic(topic); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("while deleting topic %s: %w", topic, err)
	}
	return nil
}

// Bootstrap creates the main and dead-letter topics of cfg.
func Bootstrap(cfg config.Kafka, clientID string) error {
	a, err := NewAdmin(cfg, clientID)
	if err != nil {
		return err
	}
	defer a.Close()
	if _, err := a.EnsureTopic(cfg.Topic, cfg.Partitions, cfg.ReplicationFactor, ""); err != nil {
		return err
	}
	if cfg.DLQTopic != "" {
		// The dead-letter topic's partition count carries no meaning: create
		// it like the main one if missing, accept it as it is otherwise.
		if _, ok, err := a.Describe(cfg.DLQTopic); err != nil {
			return err
		} else if !ok {
			if _, err := a.EnsureTopic(cfg.DLQTopic, cfg.Partitions, cfg.ReplicationFactor, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteGroup deletes a consumer group (tests); a missing group is fine.
func (a *Admin) DeleteGroup(group string) error {
	err := a.ca.DeleteConsumerGroup(group)
	if err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
		return fmt.Errorf("while deleting group %s: %w", group, err)
	}
	return nil
}
