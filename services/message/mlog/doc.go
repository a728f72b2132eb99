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
package mlog
