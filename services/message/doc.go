// Package message is the message tier of imcluster: the HTTP API devices and
// business back ends call, and the pipeline that turns the Kafka log into
// stored messages and deliveries. Its parts live in the sub-packages:
//
//	model     conversation ids, the log Record, cursors, buckets
//	mlog      idempotent acks=all producer, topic administration
//	store     Cassandra schema (migrations) and every query
//	pipeline  consumer group: decode → dedupe → persist → route → commit
//	api       HTTP handlers (api/openapi/message.yaml)
//	server    assembly for the binary and for child-process tests
//
// # The path of a message
//
// API: authenticate → validate everything → claim (sender, client_msg_id)
// in Cassandra with a lightweight transaction → produce the Record (key =
// conversation id) with acks=all → record the offset on the idempotency row →
// answer msg_id and seq. Pipeline, per partition in offset order, one batch
// per fetch: decode (undecodable → dead-letter topic with the reason) →
// de-duplicate → persist (messages, both users' feeds and conversation rows;
// transient errors retried with backoff, never skipped) → record the
// partition's persisted offset → route (Router) → mark for commit. Offsets
// are committed only after their effect, so a crash replays, never skips.
//
// # seq is the Kafka offset
//
// A conversation lives on one partition (hash of its id), whose offsets are
// strictly increasing, so the record's offset is a per-conversation seq that
// needs no coordination and is identical on every replay. It is sparse (gaps
// mean nothing). Failure cases and what guards them:
//
//   - Replay after a crash or rebalance: the same offsets give the same rows
//     (every write is keyed by offset and written USING TIMESTAMP offset+1),
//     so at-least-once processing has exactly-once effect. Pushes may repeat;
//     devices de-duplicate by (conv_id, seq).
//   - Zombie consumer (lost its partition, still writing): it can only write
//     the same rows for the same offsets; a late write can never undo a recall
//     (the recall has a higher timestamp) or lower a cursor (max-registers).
//   - Partition count change: would move conversations to other partitions
//     and break per-conversation order. bootstrap refuses to change it and the
//     binary refuses to start when the topic disagrees with the configuration.
//   - Topic re-created (offsets restart at 0): the pipeline stores the topic
//     id and highest persisted offset per partition and refuses to consume
//     when the id differs or the stored offset is beyond the log's end
//     (pipeline.ErrTopicRecreated). Recovery is a new keyspace. Devices
//     still hold sync cursors into the old log: sync answers 410
//     cursor_expired for a cursor beyond a partition's log end (read from
//     Kafka, cached; package api) and the device resyncs.
//   - Retention: records are needed only until committed; history lives in
//     Cassandra.
//
// Dependency restarts. A broker restart fails the sends in flight (503, or
// an error whose outcome is unknown): clients retry the same client_msg_id,
// an unknown outcome waits out the idempotency lease and is produced again
// as a Retry record, and the consumer group rejoins and replays from its
// last commit. A Cassandra restart fails claims (503, nothing produced), the
// pipeline's writes (retried, never skipped, nothing committed) and offsets
// recorded after acks (a retry then waits out the lease). TestRestartKafka
// and TestRestartCassandra (restart_test.go) prove no acked message is lost
// or doubled: each runs the tier against a server of its own
// (testdeps.PrivateKafka/PrivateCassandra, via hack/deps.sh), stops it
// cleanly or SIGKILLs it amid ~400 sends from 12 concurrent retrying
// senders, starts it again, and checks history, both participants' sync,
// routing and late retries.
//
// A Cassandra crash is survived only if Cassandra's acknowledged writes are
// durable: the pipeline commits Kafka offsets after Cassandra acknowledged
// the batch, so writes Cassandra loses afterwards are never replayed. A
// single node with commitlog_sync: periodic (the dev default, 10 s) loses
// up to 10 s of acknowledged writes when killed — TestRestartCassandra/kill
// then finds acked messages missing from history or sync. Run Cassandra
// with replication factor ≥ 3 (LOCAL_QUORUM writes outlive one node) or
// commitlog_sync: batch/group; the private Cassandra uses batch (and no
// -Dcassandra.unsafesystem, which would lose the test's fresh keyspace).
//
// # Idempotent send, durably
//
// The (sender, client_msg_id) row is created by INSERT IF NOT EXISTS before
// producing; the same key with another content hash answers 409. A retry
// answers the stored msg_id (and seq, once the first attempt recorded its
// offset). If the first attempt's outcome is unknown (it crashed between
// claim and ack) the retry waits out a lease (api.DefaultIdemLease, longer
// than a produce can stay in flight), then produces again with Retry set and
// the original attempt's time. The pipeline checks only Retry records: it
// searches the conversation's messages, newest first, back to the time the
// original could have landed (model.MaxProduceDelay, model.MaxClockSkew), and
// drops the copy if the original is there. The hot path writes nothing for
// de-duplication.
//
// Known gap: "longer than a produce can stay in flight" holds for a broker
// that answers, refuses or resets within its timeouts, and for a crashed
// API process, but it is not enforced. sarama has no delivery timeout (the
// Java client's delivery.timeout.ms), and its network timeouts are its 30 s
// defaults, so against a broker that hangs, a live process could still hold
// the first attempt when a retry produces again after the lease. If the
// original then lands after the Retry record, both are stored. Closing it
// means bounding the producer (timeouts, retries, its queue) below the lease
// and testing that bound against a broker that stops answering.
//
// # Sync is complete
//
// Every event is appended to both participants' feeds: Cassandra partitions
// (user, Kafka partition, bucket) clustered by offset. A device cursor is a
// vector of per-partition next offsets. The pipeline writes a user's feed
// entries of a batch in offset order as single-partition batches, after the
// bucket's marker and after all earlier buckets; so a reader that sees offset
// N of a partition has every earlier one, and may move past a bucket only when
// a later bucket's marker was read before the bucket itself. Events landing
// while a device pages are therefore either on the current page or after the
// returned cursor, never skipped.
//
// The unread pull walks the user's conversations in id order from their read
// cursors; its first page also returns a sync cursor taken before the walk
// (the persisted head of every partition), so unread-then-sync misses nothing
// that lands during the walk.
//
// # Bounds
//
// Request bodies (IM_MAX_MESSAGE_BYTES + envelope), API requests in flight
// ≤ 2,048 (then 503 with Retry-After), pages ≤ 100, an unread page walks ≤
// 2,000 conversations, delivered acks ≤ 1000 per call, presence lists ≤ 1000,
// pipeline batches ≤ 1000 records, Cassandra batches ≤ 32 statements and
// 40 KiB, pipeline writes in flight ≤ 96 per process, partitions ≤ 65,536
// rows (bucket = offset >> 16), marker cache ≤ 200,000 keys, recent msg_ids
// ≤ 4,096 per partition.
//
// The feed is bounded in time: its rows expire after IM_FEED_RETENTION
// (default 30 days, a per-write TTL), and a cursor older than that gets 410
// cursor_expired, never a silent gap; the device resyncs from unread pull,
// conversation list and history (store/retention.go, docs/protocol.md).
//
// Not bounded yet: the number of feed and conversation buckets a long-lived
// user or conversation accumulates over time (one marker row per 65,536
// offsets of a partition it was active in: feed markers carry no TTL, since
// a marker is written before its bucket's rows and must not expire first),
// and history, which is kept forever.
package message
