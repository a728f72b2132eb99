// Package mlog is the message tier's side of the Kafka log: the idempotent
// producer the API answers through, the dead-letter producer, and the topic
// administration of bootstrap.
//
// Contract: Produce returns only after the record is acknowledged with
// acks=all by an idempotent producer (Net.MaxOpenRequests=1), and reports the
// record's partition and offset. Records are keyed by conversation id and
// partitioned by sarama's FNV-1a hash partitioner, so a conversation lives on
// exactly one partition as long as the partition count does not change —
// which is why EnsureTopics refuses a topic whose partition count differs
// from the configuration, and CheckTopic refuses to start against one.
//
// A produce ends within ProduceBound of its configuration: sarama has no
// delivery timeout, so the network timeouts, retries, backoff and the
// metadata refresh are set explicitly (kafka.go), and NewProducer refuses a
// configuration whose bound is not below the caller's deadline (the API's
// send deadline) or whose read timeout does not exceed the broker's ack
// timeout. An error therefore means the record is not in the log or its
// outcome is unknown — never "still trying" behind the caller's back for
// longer than the bound.
//
// acks=all is only as durable as the topic: CheckTopic (every message
// process at start-up) also refuses a topic — whoever created it:
// bootstrap, Strimzi or a human — whose min.insync.replicas is below
// MinInsyncReplicas of its replication factor (2 from a factor of 3) or
// that allows unclean leader elections. The topics bootstrap creates carry
// both settings.
package mlog
