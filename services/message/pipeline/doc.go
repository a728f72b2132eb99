// Package pipeline is the consumer group that turns the Kafka log into
// stored messages and deliveries.
//
// Per partition, in offset order, one batch per fetch (≤ MaxBatch records):
//
//	decode      undecodable or invalid records → dead-letter topic with the
//	            reason (headers reason, partition, offset); never blocking
//	de-duplicate  by msg_id, in log order (dedupe.go): the first copy is
//	            stored, a later copy with the same content dropped, one with
//	            other content rejected (the sender's devices get a rejected
//	            event); earlier copies are found in the batch, an in-memory
//	            window per partition, or one plain point read of the msg_ids
//	            table per msg_id not found there (reads of a batch concurrent)
//	groups      the records of group conversations (g:<group>) are decided
//	            against the group's state at their place in the log
//	            (groups.go): membership changes applied, sends by
//	            non-members or into a dissolved group rejected to their
//	            sender, every message's recipients fixed (the members at
//	            its offset: write diffusion to each member's feed)
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
// Records are validated against the protocol's ceiling, not the configured
// send limit, so a lowered limit never dead-letters acknowledged records.
// A batch stops retrying when its consumer session ends (a rebalance); it
// is handed back uncommitted and replays wherever the partition goes.
//
// A crash replays from the last commit: same offsets, same rows, same seqs;
// devices de-duplicate repeated pushes by (conv_id, seq). On shutdown the
// batch in progress gets Consumer.Grace to finish; otherwise it is handed
// back uncommitted. Before consuming, each claimed partition is checked
// against the stored topic id and highest persisted offset
// (ErrTopicRecreated): seq is the offset, so a re-created topic must not be
// consumed into the same keyspace.
package pipeline
