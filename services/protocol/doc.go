// Package protocol holds the wire types shared by every party of imcluster:
// the message tier's HTTP API, the push tier's WebSocket frames, the
// message→push delivery batches, the device client and the SDK.
//
// Data flows one way: API → Kafka log → pipeline (dedupe, persist, route) →
// push → client. Every change to a conversation (a message, a read, a recall,
// a delivered receipt) is one record in the log, and the pipeline gives it
// the conversation's next seq. So one Event type describes all of them, and a
// device sees the same Event, with the same seq, whether it arrives by push,
// by sync, or by history.
//
// Contract for devices: within a conversation, seq is strictly increasing
// but sparse (gaps carry no meaning). Events of one conversation are pushed
// in seq order, but a push may race a sync page, so a device de-duplicates
// by (conv_id, seq) and orders by seq. docs/protocol.md has the full
// reconnect-and-sync algorithm.
package protocol
