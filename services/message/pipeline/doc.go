// Package pipeline is the consumer group that turns the Kafka log into
// stored messages and deliveries.
//
// One batch per fetch (≤ MaxBatch records) for all the partitions a
// process consumes (session.go; each partition's records in offset
// order, every decision below made per partition, as its single writer
// would); a live fetch waits up to Kafka.FetchWait,
// IM_PIPELINE_FETCH_WAIT, for records to accumulate, so that a batch's
// fixed costs — the de-duplication read, the timeline write, one delivery
// per push node, its share of an index lot — are shared by several
// messages:
//
//	decode      undecodable or invalid records → dead-letter topic with the
//	            reason (headers reason, partition, offset); never blocking
//	de-duplicate  by msg_id, in log order (dedupe.go): the first copy is
//	            stored, a later copy with the same content dropped, one with
//	            other content rejected (the sender's devices get a rejected
//	            event); earlier copies are found in the batch, an in-memory
//	            window per partition, or one plain point read of the msg_ids
//	            table per msg_id not found there (reads of a batch concurrent)
//	receipts    a delivered receipt is kept only if its seq is a 1:1
//	            message of its conversation, before it in the log
//	            (receipts.go): found in the batch, the messages this process
//	            stored lately, or by one history read; the others are
//	            dropped and counted (receipt_ignored), never clamped
//	groups      the records of group conversations (g:<group>) are decided
//	            against the group's state at their place in the log
//	            (groups.go): membership changes applied, sends by
//	            non-members or into a dissolved group rejected to their
//	            sender, every message's recipients fixed (the members at
//	            its offset: write diffusion of a reference to each member's
//	            feed, the content once in the history)
//	persist     the timeline rows (store.StageTimeline: history, msg_ids,
//	            group tables; idempotent, keyed by offset); transient errors
//	            are retried with backoff, never skipped; if the batch fails
//	            permanently (store.IsPermanent: Cassandra refuses the data
//	            itself, e.g. an oversized mutation) its records are written
//	            one by one and only the ones failing permanently on their own
//	            go to the dead-letter topic
//	route       Router.Route, in order, after persist: "pushed" implies
//	            "stored" (in the conversation's history)
//	index       every user's rows (store.StageIndex: feed entries,
//	            conversation rows, the recency index), on the session's
//	            indexer goroutine (indexer.go), one lot after the other
//	commit      the batch's last offset of each partition is marked only
//	            after all of the above, the partition's persisted head
//	            recorded; sarama commits marked offsets (every 500 ms and
//	            when a session ends)
//
// Why index after route: a group message's per-member rows cost O(members)
// mutations, a 1:1 message's four of its six rows are per user, and none of
// them is needed to deliver it. So Deliver (decode → persist → route) of
// the next batch overlaps Index of the previous ones, and the batches
// routed while an index write runs or lingers (IndexLinger) share the next
// one: a member's entries of several batches go in one request. The lag is
// bounded (IndexMaxRecords, IndexMaxLag): past it, delivery waits. Pushes no
// longer wait for the slowest part of the write, and what sync, the unread
// pull and the conversation list read still lands per user in offset
// order (store's feed contract), before the batch commits. The index may
// trail the pushes by about a second (more while working through a backlog
// after an outage: lots of thousands of records): a device that syncs
// right after a push may get that message from its next sync instead (its
// cursor never passes an entry not yet written); history has it at once. A
// device that logs in while the index trails is covered by its second
// login sync (2 s after its welcome), and when a lot came later than
// IndexLateAfter, by a sync hint (LateHinter, reason late_index).
//
// Records are validated against the protocol's ceiling, not the configured
// send limit, so a lowered limit never dead-letters acknowledged records.
// A batch stops retrying when its consumer session ends (a rebalance); it
// is handed back uncommitted and replays wherever its partitions go.
//
// A crash replays from the last commit: same offsets, same rows, same seqs;
// devices de-duplicate repeated pushes by (conv_id, seq). On shutdown the
// batch in progress and the lots queued for indexing get Consumer.Grace to
// finish; otherwise they are handed back uncommitted. Before consuming,
// each claimed partition is checked against the stored topic id and
// highest persisted offset
// (ErrTopicRecreated): seq is the offset, so a re-created topic must not be
// consumed into the same keyspace.
package pipeline
