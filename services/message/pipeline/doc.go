// Package pipeline is the consumer group that turns the Kafka log into
// stored messages and deliveries.
//
// Per partition, in offset order, one batch per fetch (≤ MaxBatch records):
//
//	decode      undecodable or invalid records → dead-letter topic with the
//	            reason (headers reason, partition, offset); never blocking
//	de-duplicate  message records marked Retry (an API retry whose first
//	            attempt's outcome was unknown) are dropped when their msg_id is
//	            already persisted at another offset: an in-memory recent set,
//	            then a search of the conversation's messages back to the
//	            original attempt's time window — only for those records, so
//	            the hot path has no read
//	persist     store.Persist (idempotent, keyed by offset); transient errors
//	            are retried with backoff, never skipped; if the batch fails
//	            permanently (store.IsPermanent: Cassandra refuses the data
//	            itself, e.g. an oversized mutation) its records are written
//	            one by one and only the ones failing permanently on their own
//	            go to the dead-letter topic
//	route       Router.Route, in order, after persist: "pushed" implies
//	            "stored"
//	commit      the batch's last offset is marked only after all of the
//	            above; sarama commits marked offsets (every 500 ms and when
//	            a session ends)
//
// A crash replays from the last commit: same offsets, same rows, same seqs;
// devices de-duplicate repeated pushes by (conv_id, seq). On shutdown the
// batch in progress gets Consumer.Grace to finish; otherwise it is handed
// back uncommitted. Before consuming, each claimed partition is checked
// against the stored topic id and highest persisted offset
// (ErrTopicRecreated): seq is the offset, so a re-created topic must not be
// consumed into the same keyspace.
package pipeline
