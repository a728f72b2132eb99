// Package store is the message tier's Cassandra schema (migrations/, applied
// by Migrate with golang-migrate) and every query it runs.
//
// Contracts:
//
//   - Persist is idempotent and replay-safe: every row the pipeline writes is
//     keyed by the record's Kafka offset and written USING TIMESTAMP derived
//     from offsets, so writing a batch twice, or a zombie consumer writing an
//     old batch late, leaves the same state. A recall (a later offset) always
//     wins over a replayed original.
//   - A batch's writes come in two stages (PersistStage): the timeline
//     (history rows, msg_ids, group tables: what makes a record stored,
//     written before it is routed) and the index (every user's feed
//     entries, conversation rows, recency index: written after routing,
//     a partition's index batches one after the other, in offset order).
//     Persist writes both at once. Index writes hold at most
//     MaxIndexWritesInFlight of the MaxWritesInFlight slots.
//   - Per (user, partition) feed entries are written in offset order, one
//     single-partition batch (or a sequence of them, in order) per user per
//     pipeline batch, and a feed bucket marker is written before its first
//     entry and after every entry of earlier buckets. Sync relies on that: a
//     reader that sees offset N in a feed partition has seen every earlier
//     entry, and a bucket is finished once a later marker exists.
//   - A group message's feed entry is a reference without content; Sync
//     fills it in from the group's history row (hydrate.go), which the
//     timeline stage wrote before the entry.
//   - Feed rows expire after the feed retention (a per-write TTL); a sync
//     cursor carries a time horizon and Sync answers ErrCursorExpired once
//     rows it has not seen may have expired (retention.go). History, markers
//     and conversations do not expire.
//   - Seq columns of conversations are max-registers (USING TIMESTAMP value+1).
//   - msg_ids rows (dedupe.go) are written beside their message USING
//     TIMESTAMP 2^62 - seq: the lowest seq of a msg_id wins, whatever the
//     order of writes. Only the pipeline writes them; the API reads one for
//     a send marked as a retry.
//   - Every query is prepared (gocql prepares and caches each statement) and
//     routed token-aware. Reads are bounded: point reads by full primary
//     key, or a LIMIT (the feed's and history's range reads), except
//     PersistedHeads, which reads the partition_state rows of one topic (one
//     row per Kafka partition).
package store
