// Package client is the Go device client of imcluster: it connects to a push
// node over WebSocket, logs in, receives events, acks them, reconnects with
// backoff and jitter (to the next URL: a load balancer or another node),
// and after every login syncs from its cursor through the message API, so
// a device never misses an event. Events reach OnEvent once per
// (conv_id, seq) as far as its bounded memory (dedupe.go: 1,024
// conversations × 256 seqs) can tell, exactly once with Config.Known (the
// app's store, asked about every event memory does not recognise). Without
// Known an event memory cannot judge is handed on, never dropped — so an
// app stores events keyed by (conv_id, seq). Within a
// conversation events arrive in seq order from push, and a sync page may
// bring older seqs the push missed, so an app orders its view by seq. It
// syncs after every 128 pushed events, which keeps sync replays recent. With a TokenSource it refreshes the session's token on the
// socket before it expires and logs in with a fresh token after
// token_expired; with a fixed Token it stops when that token expires.
// docs/protocol.md describes the algorithm this implements.
package client
