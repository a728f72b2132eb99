package config

import (
	"strconv"
	"strings"
	"time"
)

// Env renders m as the environment LoadMessage reads, so that
// LoadMessage(Env(m)) gives m back for every field that is set. Zero fields
// are left out: LoadMessage then applies its default. The operator renders
// pods' environments with it.
func (m Message) Env() map[string]string {
	e := envOf(m.Common)
	putList(e, EnvKafkaBrokers, m.Brokers)
	put(e, EnvKafkaTopic, m.Topic)
	put(e, EnvKafkaDLQTopic, m.DLQTopic)
	putInt(e, EnvKafkaPartitions, int(m.Partitions))
	putInt(e, EnvKafkaReplication, int(m.ReplicationFactor))
	put(e, EnvKafkaGroup, m.Group)
	put(e, EnvKafkaInstanceID, m.GroupInstanceID)
	put(e, EnvKafkaTLSDir, m.Kafka.TLSDir)
	put(e, EnvKafkaSASLUserFile, m.SASLUserFile)
	put(e, EnvKafkaSASLPassFile, m.SASLPassFile)
	putDur(e, EnvFetchWait, m.FetchWait)
	putList(e, EnvCassandraHosts, m.Hosts)
	put(e, EnvCassandraKeyspace, m.Keyspace)
	put(e, EnvCassandraLocalDC, m.LocalDC)
	put(e, EnvCassandraRepl, m.Replication)
	put(e, EnvCassandraUserFile, m.UserFile)
	put(e, EnvCassandraPassFile, m.PassFile)
	put(e, EnvUserKeyFile, m.UserKeyFile)
	put(e, EnvServiceKeyFile, m.ServiceKeyFile)
	putInt(e, EnvMaxMessageBytes, m.MaxMessageBytes)
	putDur(e, EnvRecallWindow, m.RecallWindow)
	putInt(e, EnvGroupMaxMembers, m.MaxGroupMembers)
	putInt(e, EnvGroupMaxPerUser, m.MaxGroupsPerUser)
	if m.FeedRetention == FeedRetentionForever {
		e[EnvFeedRetention] = "0"
	} else {
		putDur(e, EnvFeedRetention, m.FeedRetention)
	}
	return e
}

// Env renders p as the environment LoadPush reads (see Message.Env).
func (p Push) Env() map[string]string {
	e := envOf(p.Common)
	put(e, EnvUserKeyFile, p.UserKeyFile)
	put(e, EnvAdvertiseURL, p.AdvertiseURL)
	put(e, EnvMessageURL, p.MessageURL)
	putInt(e, EnvMaxConnections, p.MaxConnections)
	putDur(e, EnvHeartbeatInterval, p.HeartbeatInterval)
	putInt(e, EnvSendQueueLength, p.SendQueue)
	putDur(e, EnvPresenceLeaseTTL, p.PresenceLeaseTTL)
	return e
}

func envOf(c Common) map[string]string {
	e := map[string]string{}
	put(e, EnvNodeID, c.NodeID)
	put(e, EnvHTTPAddr, c.HTTPAddr)
	put(e, EnvInternalAddr, c.InternalAddr)
	put(e, EnvMetricsAddr, c.MetricsAddr)
	putList(e, EnvEtcdEndpoints, c.EtcdEndpoints)
	put(e, EnvEtcdPrefix, c.EtcdPrefix)
	put(e, EnvEtcdTLSDir, c.EtcdTLSDir)
	put(e, EnvInternalKeyFile, c.InternalKeyFile)
	putDur(e, EnvShutdownGrace, c.ShutdownGrace)
	put(e, EnvTLSCertFile, c.TLSCertFile)
	put(e, EnvTLSKeyFile, c.TLSKeyFile)
	put(e, EnvTLSCAFile, c.TLSCAFile)
	return e
}

func put(e map[string]string, k, v string) {
	if v != "" {
		e[k] = v
	}
}

func putList(e map[string]string, k string, v []string) {
	put(e, k, strings.Join(v, ","))
}

func putInt(e map[string]string, k string, v int) {
	if v != 0 {
		e[k] = strconv.Itoa(v)
	}
}

func putDur(e map[string]string, k string, v time.Duration) {
	if v != 0 {
		e[k] = v.String()
	}
}
