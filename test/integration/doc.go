// Package integration proves that the real dependency stack hack/deps.sh
// brings up does what the services rely on: sarama's idempotent acks=all
// producer and committed consumer-group offsets on Kafka 4, gocql's prepared
// statements and lightweight transactions on Cassandra 5, etcd leases and
// watches, and a real kube-apiserver under envtest. Every test skips on a
// laptop without the servers and fails under CI=true (see test/testdeps).
package integration
