// Package push is the push tier: the WebSocket gateway devices connect to,
// and the internal endpoint message pods deliver events to.
//
// # Contract
//
//   - A device logs in with its first frame (user JWT, device id, terminal),
//     within LoginTimeout. The node registers the session in etcd presence
//     under its lease and answers welcome. A second login of the same user on
//     the same terminal kicks the older session (kick frame, then close),
//     locally or on whatever node holds it (presence posts a kick key there).
//   - A session lives no longer than its token: the sweep (every
//     min(Heartbeat/2, SweepEvery)) closes it with token_expired once the
//     token's exp has passed, unless a refresh frame with a fresh token of
//     the same user moved the expiry (answered by refreshed). The sweep is
//     one loop over the connections: no timer or goroutine per connection.
//   - Deliveries (protocol.DeliveryPath, internal token) are queued on each
//     target connection whose live session has the target's epoch; others
//     count as missed (the device syncs). Queues are bounded (SendQueue
//     frames); a full queue or a write that does not finish within
//     WriteTimeout cuts the client off with slow_consumer.
//   - Sync hints (Resync, the presence Registrar's OnResync hook): when a
//     router skipped a batch for this node (its hint key in etcd) or the
//     node re-registered after losing its lease, every logged-in device
//     gets a sync frame (reason, sync_within_ms = SyncSpread) and syncs
//     from its cursor; after a re-registration a second frame follows
//     ResyncAfter later. See package presence, "Sync hints", and
//     docs/protocol.md section 5.
//   - ACK frames become delivered receipts posted to the message tier,
//     coalesced per (conversation, user, device) every 50 ms.
//   - send frames are forwarded to the message tier's send endpoint on the
//     device's behalf (X-IM-Act-As, X-IM-Device), answered by send_result;
//     at most MaxInflightSends per connection (more: rate_limited) and
//     MaxForwarding per node (more: unavailable at once) await an answer.
//   - Bad frames (bad JSON, unknown fields or types, binary, fragmented,
//     unmasked, invalid UTF-8), oversize frames (protocol.MaxFrameBytes),
//     bad tokens and floods (FrameRate/FrameBurst token bucket) close the
//     connection with an error frame carrying a stable code and a close
//     frame whose reason is that code. Nothing is forwarded for them.
//     Frames RFC 6455 forbids (control frames over 125 bytes or fragmented,
//     invalid close status codes, unknown opcodes) close with status 1002,
//     never echoed.
//   - Drain: stop accepting, close every connection with a drain frame at a
//     random moment within the spread (and a random reconnect hint), wait
//     for them within the grace period, then cut the rest.
//
// # Bounds
//
// Per connection: the upgrade request 16 KiB (and LoginTimeout), SendQueue
// frames, MaxInflightSends forwarded sends, one frame read at a time
// (protocol.MaxFrameBytes, its buffer grown as its bytes arrive, within
// FrameReadTimeout). Per node: MaxConnections (upgrades under way count
// toward it, with room for min(1,024, MaxConnections) more that get
// at_capacity; further connections are closed unanswered),
// MaxForwarding forwarded sends, 50,000 delivered-ack keys waiting behind
// a flush (a flush ends within 10 s, 2 s at Close), 16 presence logouts in
// flight (the rest wait as small records, at most one per session).
//
// # Memory per idle connection
//
// The read side is event-driven (poller_linux.go: epoll in one-shot mode):
// an idle connection has no goroutine and no buffer, only its conn struct,
// Go's netFD and map entries (about 1 KiB) plus kernel socket buffers, which
// do not count in the process RSS. A goroutine runs only while a frame is
// read, or while a queue is written (writev of the queued frames, then it
// exits). Server frames are unmasked, so one encoded frame is shared by all
// targets of a delivery.
//
// # TLS (wss://)
//
// Serve on a tls.NewListener serves wss://. A TLS connection cannot use the
// event-driven path: tls.Conn decrypts whole records into its own buffer,
// so a frame can be ready with no readiness on the socket (two frames in
// one record), and epoll would leave it unread. Each TLS connection (and
// each connection on a platform without the poller) therefore gets a
// reading goroutine blocked in Read (reader.go); the
// imcluster_push_blocking_readers gauge counts them. Measured with
// `imctl bench --rate 0` at 1,000 idle connections (docs/benchmarks.md,
// "wss:// against ws://"): 32 KiB of process RSS per TLS connection
// (goroutine stack plus tls.Conn record buffers; 13 KiB of heap) against
// 9 KiB per plain one, i.e. ~2 GiB more per 100,000 connections, plus the
// handshakes' CPU at every reconnect storm. Very large fleets should terminate TLS at the load
// balancer (or an ingress/proxy) and run the pods plain; pod-side TLS is
// for deployments where nothing in front can hold the certificate.
package push
