// Package message is the message tier of imcluster: the HTTP API devices and
// business back ends call, and the pipeline that turns the Kafka log into
// stored messages and deliveries. Its parts live in the sub-packages:
//
//	model     conversation ids, the log Record, cursors, buckets
//	mlog      idempotent acks=all producer, topic administration
//	store     Cassandra schema (migrations) and every query
//	pipeline  consumer group: decode → dedupe → persist → route → index → commit
//	api       HTTP handlers (api/openapi/message.yaml)
//	server    assembly for the binary and for child-process tests
//
// # The path of a message
//
// API (log first): authenticate → validate everything → derive msg_id from
// (sender, client_msg_id) → produce the Record (key = conversation id) with
// acks=all → answer msg_id (and seq when known; api's doc). Nothing but
// Kafka before the answer: no Cassandra read or write, so sends go on while
// Cassandra is down. Pipeline, per partition in offset order, one batch per
// fetch: decode (undecodable → dead-letter topic with the reason) →
// de-duplicate by msg_id (the first copy in log order wins) → persist the
// timeline (history rows, msg_ids rows, group tables; transient errors
// retried with backoff, never skipped) → route (Router) → index (every
// user's feed entries and conversation rows, on a goroutine per partition,
// in offset order, a little after the pushes: pipeline's doc) → record the
// partition's persisted offset → mark for commit. Offsets are committed
// only after their effect, so a crash replays, never skips.
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
// Dependency restarts. A broker restart fails the sends in flight (503,
// or an error whose outcome is unknown): clients retry the same
// client_msg_id with the next attempt number, the pipeline keeps the first
// copy in log order, and the consumer group rejoins and replays from its
// last commit. A Cassandra outage does not touch sends: the API keeps
// answering 200 (a retry's lookup gives up after a second and the retry is
// produced again); the pipeline's writes fail and are retried with
// backoff, nothing is committed, and it catches up when Cassandra is back;
// reads (sync, history, unread) answer 503 with Retry-After meanwhile, and
// /readyz stays ready (it reports Cassandra down). TestRestartKafka and
// TestRestartCassandra (restart_test.go) prove no acked message is lost or
// doubled: each runs the tier against a server of its own
// (testdeps.PrivateKafka/PrivateCassandra, via hack/deps.sh), stops it
// cleanly or SIGKILLs it amid sends from 12 concurrent retrying senders
// (Cassandra: held down 60 s under a steady stream, and no send may be
// refused), starts it again, and checks history, both participants' sync,
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
// Consumer group membership is static (KIP-345) when the process has a
// stable unique name (IM_NODE_ID, the pod name): a message process that
// crashes and restarts within the session timeout gets its partitions back
// without a rebalance, and one that shuts down leaves the group explicitly,
// so its partitions move at once. A batch stops retrying when its session
// ends (a rebalance), so a batch stuck on a failing store does not hold the
// group's rebalance into the session timeout.
//
// # Idempotent send, durably
//
// msg_id = UUIDv5(sender, client_msg_id), so every attempt carries the same
// id without asking anyone. Idempotency lives in the pipeline, the single
// writer of each conversation's partition: the first copy of a msg_id in
// log order is stored, later copies with the same content are dropped, and
// later copies with other content are rejected (a rejected event in the
// sender's feed). Earlier copies are found in the batch, in an in-memory
// window of the msg_ids stored lately per partition, or by one plain point
// read of the msg_ids table per msg_id not found there; the msg_ids row is
// written beside the message with the lowest seq winning, so replays and a
// zombie consumer cannot make a second stored copy (pipeline/dedupe.go).
// There is no time bound: a copy days later is found like one a second
// later. A produce held by a hung broker and landing after its retry is the
// later copy and is dropped. The one case not settled: one client_msg_id
// reused for two different recipients at the same instant (two partitions,
// each writer may miss the other's row; both are stored).
//
// Rolling update from the release with the idempotency table: old API pods
// still claim there and produce records with random msg_ids, which the new
// pipeline stores like any other; a send whose attempts straddle an old and
// a new pod carries two msg_ids and may be stored twice (the rollout's
// window only). The table is dropped by the next release's migration.

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
// 40 KiB, pipeline writes and lookups in flight ≤ 96 per process,
// partitions ≤ 65,536 rows (bucket = offset >> 16), marker cache ≤ 200,000
// keys, the de-duplication window ≤ 4,096 msg_ids per partition, a send ≤
// SendDeadline (14 s), attempt numbers ≤ 1,000. Records are checked in the
// pipeline against the protocol's ceiling (model.MaxBodyCeiling), not the
// configured send limit, so lowering IM_MAX_MESSAGE_BYTES never
// dead-letters records acknowledged under the old limit.
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
