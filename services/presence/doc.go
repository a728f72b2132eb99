// Package presence is the user/device → push node directory, kept in etcd.
//
// Push nodes write it: a node registry entry and one entry per connected
// device session, all under the node's lease, so a dead node's entries
// vanish on their own when the lease expires. Message pods read it through a
// watch-fed in-memory cache (Directory), never with an etcd read per message.
//
// # Sync hints (self-healing delivery)
//
// Whenever a push to a node's sessions may have been dropped while the
// sessions stay connected, the node is told, and tells its devices to sync
// (a sync frame, docs/protocol.md):
//
//   - A router that skipped a batch for a registered node (breaker open,
//     retries exhausted, batch refused) calls Hinter.Hint: one key per node,
//     P/push/hints/<node>, created only when absent (a transaction) and
//     under the node's own lease, so it vanishes with the node. The node's
//     Registrar watches its key, deletes it (compare-and-delete at the seen
//     revision) and only then calls the OnResync hook. A router's skipped
//     events were stored before its transaction; the transaction either
//     created the key (the node handles it later) or found it present (the
//     node deletes it later, and hints after the delete): either way the
//     devices' sync starts after the events were stored. Etcd writes per
//     skipped batch: one transaction, which writes nothing while a hint is
//     pending.
//
//   - A Registrar that lost its lease (etcd unreachable longer than the
//     TTL) re-registers the node and its sessions under a new lease, then
//     calls OnResync: while the entries were gone, routers skipped the
//     node's devices without a trace.
//
//   - A message pod's Cache that heard nothing from etcd for StaleAfter
//     (a partition, etcd down) is stale: routers go on with its last view,
//     so a device that logged in elsewhere meanwhile may miss pushes (they
//     went to its old node, or nowhere). When the cache is known current
//     again (a progress notification, sent once the watch caught up, or a
//     fresh listing), it hints every node holding a session whose login
//     (SinceMs) is after the moment it was last current, minus a second
//     of clock skew.
//
// Hint keys share the node's lease, so a crashed node leaves none behind;
// its devices reconnect elsewhere and sync after the login anyway.
//
// # Health
//
// Registrar.Healthy is true while the lease is known to be alive (a
// keep-alive answer within the TTL) and no re-registration is under way;
// push nodes report it on /readyz.
package presence
