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
//     idempotent acks=all producer; TestEtcdKillLosesNothingAcked for etcd
//     (run with --unsafe-no-fsync).
//   - TestWedgedPushNodeDoesNotStallRouting: SIGSTOP of a registered push
//     process; routing to another node is held only by the breaker's bound
//     (services/route), and the wedged node's device gets a sync hint after
//     SIGCONT.
//   - TestLeaseLossSyncsDevicesAndReadiness: a push process stopped past
//     its lease re-registers, its device gets a lease_lost sync hint, and
//     /readyz is true again without a restart.
//   - TestPushReadyAfterEtcdOutage: kill -9 of a private etcd for 15 s: the
//     push node is not ready meanwhile, ready within 10 s once etcd is back.
//   - TestPushStartsWhileEtcdDown: a push process started while etcd is
//     down waits (not ready) instead of exiting, and is ready within 10 s
//     of etcd being back.
//   - TestCassandraDurabilityCost: a measurement (IMC_FAULT_MEASURE=1), not
//     a check: what the durable Cassandra settings cost.
//
// They run in `make test` (hack/test.sh runs ./...; -short skips them):
// about 6 minutes in all on two busy cores, most of it the private
// Cassandra's and Kafka's restarts and one build of cmd/imcluster.
package fault
