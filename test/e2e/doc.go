// Package e2e runs imcluster end to end: real imcluster processes (one
// message, several push nodes) built from this tree, against the real Kafka,
// Cassandra and etcd of hack/deps.sh, each run isolated by a unique topic,
// keyspace, consumer group and etcd prefix. Devices are pkg/client clients.
//
// Covered: cross-node delivery, echo to the sender's other device, delivered
// receipts, the SDK, sends over the socket (idempotent), same-terminal kick
// across nodes, offline → login → pull, kill -9 of a push node while
// messages flow (every message exactly once, in order), lease expiry, SIGTERM
// drain, bad frames/tokens/floods closed with stable codes, and a device
// whose cursor expired while it was away (short feed retention) resyncing
// on reconnect: every message exactly once.
package e2e
