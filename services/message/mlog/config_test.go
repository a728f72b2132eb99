package mlog

import (
	"errors"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/config"
)

// The shipped producer configuration ends every produce below the API's
// send deadline, and the check refuses configurations that would not.
func TestProducerBound(t *testing.T) {
	sc, err := ProducerConfig(config.Kafka{Brokers: []string{"x:9092"}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckProducerConfig(sc, 14*time.Second); err != nil {
		t.Fatalf("the shipped configuration: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*sarama.Config)
	}{
		{"sarama's default network timeouts", func(c *sarama.Config) {
			c.Net.DialTimeout, c.Net.ReadTimeout, c.Net.WriteTimeout = 30*time.Second, 30*time.Second, 30*time.Second
		}},
		{"more retries", func(c *sarama.Config) { c.Producer.Retry.Max = 3 }},
		{"read timeout not above the broker's ack timeout", func(c *sarama.Config) { c.Producer.Timeout = c.Net.ReadTimeout }},
		{"unbounded metadata refresh", func(c *sarama.Config) { c.Metadata.Timeout = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := ProducerConfig(config.Kafka{Brokers: []string{"x:9092"}}, "t")
			tt.mutate(c)
			if err := CheckProducerConfig(c, 14*time.Second); err == nil {
				t.Fatalf("accepted (bound %v)", ProduceBound(c))
			}
		})
	}
}

func TestTopicDurabilitySettings(t *testing.T) {
	entries := func(minISR, unclean string) []sarama.ConfigEntry {
		return []sarama.ConfigEntry{{Name: "min.insync.replicas", Value: minISR}, {Name: "unclean.leader.election.enable", Value: unclean}}
	}
	tests := []struct {
		rf      int
		entries []sarama.ConfigEntry
		ok      bool
	}{
		{1, entries("1", "false"), true},
		{2, entries("1", "false"), true},
		{3, entries("2", "false"), true},
		{3, entries("1", "false"), false}, // one broker's copy is all acks=all waits for
		{5, entries("2", "false"), true},
		{5, entries("1", "false"), false},
		{3, entries("2", "true"), false}, // an out-of-sync replica may become leader
		{3, entries("x", "false"), false},
	}
	for _, tt := range tests {
		err := checkSettings("im.messages", tt.rf, tt.entries)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrUnsafeTopic)) {
			t.Errorf("rf %d %v: %v, want ok=%v", tt.rf, tt.entries, err, tt.ok)
		}
	}
}
