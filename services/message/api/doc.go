// Package api is the message tier's HTTP API (JSON; api/openapi/message.yaml
// describes every endpoint): send, sync, pull unread, history, read, recall,
// presence queries, and the push tier's delivered acks.
//
// Every answer that is not 2xx carries a protocol.Error with a stable code.
// Every request is validated completely before anything is written or
// produced: a 4xx answer means nothing changed.
//
// What a send's 200 promises: the record is in the Kafka log, acknowledged
// with acks=all by an idempotent producer, so it will be persisted and
// delivered (or synced) by the pipeline. When the answer carries seq, that is
// the message's final place in its conversation (seq = the record's offset).
// A retry of the same (sender, client_msg_id) answers the same msg_id; it
// carries seq when the first attempt recorded its offset. The first attempt
// records it just after answering (the ack does not wait for that write), so
// a retry finding no offset yet looks again until that write has had its
// time (≤ 6 s).
// It answers 503 unavailable with Retry-After while a first attempt whose
// outcome is unknown may still be in flight (at most IdemLease), so a retry
// can never race its original into the log.
//
// Sync answers 410 cursor_expired for a cursor the device must not continue
// from: older than the feed retention (the store's check), or ahead of the
// log — a position beyond a partition's log end (high watermark), which
// happens when offsets restarted (topic re-created, deployment restored from
// an older backup) and would otherwise silently hide every new event below
// it. The log ends come from Kafka (LogEnds, mlog) through a cache, so a
// sync costs no Kafka round trip: a cursor within the cached ends is served
// at once; one beyond them waits for a read begun after the request arrived
// (reads are single-flight, at most one per LogEndRefreshGap, 100 ms) and is
// expired only if still beyond it; offsets this process's producer had
// acknowledged raise the cached ends too. A read that fails answers 503
// unavailable, never a guess. Cached ends older than a minute are read again
// before they vouch for a cursor, so a log re-created under a running tier
// is noticed too. The ends are never compared with the persisted heads in
// Cassandra: those are written after a batch's feed rows, so a good cursor
// may briefly be beyond them.
//
// Delivered acks (internal token) cost one point read of the acking user's
// conversation row per (conversation, user) of a batch: an ack beyond that
// row's last message seq is ignored (counted in the answer, never clamped)
// so no ack produces a receipt for a message that does not exist.
package api
