// Package route is the message tier's side of delivery: it turns routed
// events into per-push-node delivery batches, using a watch-fed presence
// Directory (no etcd read per message).
//
// # Contract (Router.Deliver, also behind the pipeline's Router interface)
//
//   - Every online session of the listed users gets the event, except the
//     author's own device that caused it (ExceptDevice of Event.From).
//   - Deliveries are grouped per node, in the order given, in batches of at
//     most protocol.MaxDeliveryBatch and protocol.MaxDeliveryBytes of JSON
//     (a bigger batch is sent in halves); nodes are called in parallel, the
//     batches of one node one after the other.
//   - Deliver returns once every node holding a target accepted its
//     batches, was found gone (not in the registry any more, or refusing
//     connections: its process is gone, and so are its devices' sockets),
//     or was skipped. It returns an error only when ctx is done.
//   - Skipped: a node that answers 4xx (bad token, bad batch: retrying
//     cannot help), or keeps failing (timeouts, 5xx) for GiveUpAfter (5 s),
//     or whose breaker is open. Every skip leaves a sync hint for the node
//     (presence.Hinter, doc of package presence): the node tells its
//     devices to sync, so a skipped push is never silently lost for a
//     connected device. The hint is written before Deliver returns, hence
//     before the caller commits; if etcd cannot take it then, it is
//     retried in the background until written or the node is gone (a
//     message pod that dies meanwhile loses it: the known gap).
//   - The breaker (breaker.go) remembers a node that made a batch give up:
//     its batches are skipped at once (and hinted) for a backoff doubling
//     from BreakerMin (1 s) to BreakerMax (30 s); then one batch probes it
//     within ProbeBudget (1 s) while the others still skip. So a wedged but
//     registered node (SIGSTOP, a dead kernel, a black-holed network) costs
//     one batch GiveUpAfter, then at most ProbeBudget per backoff period,
//     instead of GiveUpAfter on every batch of every partition. A skipped
//     batch still waits for its hint: one etcd transaction (a few ms on a
//     quiet etcd; at most 2 s, then the hint is retried in the background).
//     A success, a 4xx answer, or the node leaving the registry closes it.
package route
