// Package webhook calls a business back end: the synchronous before_send
// check on the send path (Gate) and the asynchronous events (Dispatcher).
// docs/webhooks.md is the user's guide; services/webhook/wire is the wire
// contract (bodies, headers, signature) shared with pkg/sdk.
//
// # before_send (Gate)
//
// When IM_WEBHOOK_BEFORE_SEND_URL is set the message API calls it for every
// send, after authentication and validation and before the produce, with
// one signed POST bounded by IM_WEBHOOK_BEFORE_SEND_TIMEOUT (default
// 200 ms). The answer allows, refuses (403 `refused` with the business's
// reason code; nothing produced) or replaces the body (validated like a
// client's). A failed check (timeout, transport error, non-200, malformed
// answer, invalid replacement) lets the send go on unchanged when
// IM_WEBHOOK_BEFORE_SEND_ON_FAILURE=open (default) and answers 503
// `unavailable` with Retry-After when it is closed. Unset, the API holds
// a nil gate and pays one nil check per send.
//
// Retries: the check runs before a retry's lookup of its stored copy, so
// every attempt of a client_msg_id is asked again (with its attempt
// number), and the lookup compares the stored content with the body the
// check answered. A business that answers differently for the same
// msg_id and content across attempts gets what it asked for per attempt:
// a retry may be refused although its first attempt was accepted (the
// message stays stored and delivered: a refusal never deletes), and a
// replacement that differs from the first attempt's is an
// idempotency_clash (409) or, when produced, a rejected event to the
// sender. Answer deterministically per msg_id.
//
// # Asynchronous events (Dispatcher)
//
// When IM_WEBHOOK_URL is set, every message process with a pipeline role
// (all, pipeline) runs a Dispatcher: its own consumer group
// (IM_WEBHOOK_GROUP, default IM_KAFKA_GROUP-webhook) over the message log
// and the events topic (<log topic>.webhook). It shares nothing with the
// pipeline's group but the log: a slow, failing or absent receiver delays
// only webhook events, never storing or pushing. A new group starts at
// the log's end (configuring a webhook does not replay history): the
// first session that claims a partition the group never committed
// commits the partition's end before consuming it, so a dispatcher that
// dies on its first batch leaves that start behind and the next one
// resumes there instead of at the then log end.
//
// Events and where they come from:
//
//   - after_send, after_read, after_recall: a message, read or recall
//     record of the log (seq = the record's offset, as stored). A send
//     retried into the log twice yields one event ID; the receiver
//     de-duplicates across batches.
//   - offline_message: for a 1:1 message whose recipient has no live
//     session in the presence cache (services/presence Directory) when
//     the dispatcher consumes the record. This approximates "no device
//     was connected when the message was routed": the dispatcher usually
//     runs within milliseconds of the router, but when it lags (receiver
//     down, backlog) it judges against later presence: a recipient who
//     came online meanwhile (and got the message by push or sync) gets no
//     offline_message, one who left meanwhile gets one though the push
//     may have reached them. For a mobile-push hook both errors are
//     benign. Group conversations get no offline_message (no membership
//     here).
//   - user_online, user_offline: transitions of a user's session count
//     between 0 and more, from an etcd watch of the presence prefix by one
//     leader among the dispatchers (an election under
//     <prefix>/webhook/presence-leader), produced to the events topic
//     (key: user) and delivered from there like the others. The leader
//     saves the revision it produced up to; a new leader resumes from it
//     (same event IDs: the ID carries the etcd revision).
//
// Delivery: at least once. Per partition claim the dispatcher takes up to
// MaxBatch records, delivers their events with at most Concurrency
// requests in flight, and marks the batch's last offset only when every
// event was acknowledged (2xx) or dead-lettered. A failed attempt is
// retried with exponential backoff (DefaultBackoffMin doubling to
// DefaultBackoffMax, ±20% jitter) up to IM_WEBHOOK_MAX_ATTEMPTS; then, or
// at once for a 4xx other than 408/429, the event goes to the dead-letter
// topic <log topic>.webhook.dlq (DeadLetter JSON, key: event ID), whose
// produce is itself retried until acknowledged. Events of one partition
// are delivered in batches: within a batch concurrently (no order; use
// seq), batch after batch. Memory is bounded by claims × MaxBatch × 2
// events. Every request is signed (wire.Signature: HMAC-SHA256 over
// "<unix seconds>.<body>") and carries Idempotency-Key = the event ID and
// the attempt number.
//
// Readiness: the hosting process shows "webhook" on /readyz (not gating):
// ok while the dispatcher holds a consumer group session with every claim
// consuming. Metrics: metrics.go (imcluster_webhook_*).
package webhook
