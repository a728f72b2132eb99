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
//   - Deliver returns once every node holding a target accepted its batches
//     or was found gone: not in the registry any more, or refusing
//     connections (its process is gone, and so are its devices' sockets).
//     A 4xx answer (bad token, bad batch) is logged and not retried: it
//     cannot succeed, and the devices sync. Other failures (timeouts, 5xx) are retried with backoff while the node
//     stays registered, at most GiveUpAfter (longer than the presence lease,
//     so a crashed node's registration expires first). Skipped devices get
//     the events by sync when they reconnect.
//   - It returns an error only when ctx is done.
package route
