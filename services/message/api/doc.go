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
// delivered (or synced) by the pipeline — or, if the same (sender,
// client_msg_id) was used earlier in log order, de-duplicated against it.
// The send touches nothing but Kafka before it answers (no Cassandra read
// or write), so sends go on while Cassandra is down. The answer always
// carries msg_id, derived from (sender, client_msg_id) (model.MessageID):
// every attempt, through any pod, gets the same one. It carries seq when
// the API knows the stored message's seq:
//
//   - a first attempt (attempt absent, 0 or 1): its own offset, which is the
//     message's seq unless the client reused the client_msg_id without
//     marking a retry — then the pipeline keeps the earlier copy (same
//     content) or rejects this one (other content: a rejected event goes
//     to the sender's devices);
//   - a retry (attempt > 1) whose stored message one plain read finds: its
//     seq, with duplicate=true, and nothing is produced; 409
//     idempotency_clash if it was stored with other content;
//   - a retry the read does not find (not stored yet, or the store is slow
//     or down): produced again, answered without seq; the pipeline keeps
//     the first copy in log order and the sender's devices get the
//     message's event with its seq.
//
// A send ends within SendDeadline: the producer's timeouts and retries are
// bounded below it (mlog.CheckProducerConfig), so an error answer (503)
// means the produce failed or its outcome is unknown — retry with the same
// client_msg_id and the next attempt number.

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
