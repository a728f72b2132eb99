// Package fault holds cross-process fault tests (issue 11): each kills,
// stops or wedges a real process — a private dependency server
// (testdeps.PrivateKafka, PrivateCassandra) or a private push process —
// and checks what the project promises about it: nothing acknowledged is
// lost, nothing stalls beyond its bound, the system recovers on its own.
//
// Tests never touch the shared servers (testdeps.Etcd and friends are used
// only through unique prefixes and topics). Each awaits events with
// deadlines and cleans up what it started.
//
//   - TestCassandraKillLosesNothingAcked: kill -9 of a Cassandra run with
//     hack/deps.sh's durable settings, under write load, then hack/deps.sh
//     start at once: every acknowledged write is there, the schema too.
//   - TestKafkaKillLosesNothingAcked: the same for Kafka with an
//     idempotent acks=all producer.
package fault
