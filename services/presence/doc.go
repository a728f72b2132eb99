// Package presence is the user/device → push node directory, kept in etcd.
//
// Push nodes write it: a node registry entry and one entry per connected
// device session, all under the node's lease, so a dead node's entries
// vanish on their own when the lease expires. Message pods read it through a
// watch-fed in-memory cache (Directory), never with an etcd read per message.
package presence
