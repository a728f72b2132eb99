package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reasons carried by hints and sync frames.
const (
	ReasonRouteSkipped = "route_skipped" // a router skipped a batch for the node
	ReasonLeaseLost    = "lease_lost"    // the node re-registered after losing its lease
	ReasonStaleRoute   = "stale_route"   // a router routed with a stale presence view
	ReasonLateIndex    = "late_index"    // users' feed rows were written long after their events were routed
)

// Hinter tells a push node that pushes to its sessions may have been
// dropped, so that it makes them sync (see doc.go, "Sync hints").
type Hinter interface {
	// Hint records the hint for nodeID. nil also when the node is gone
	// (its devices reconnect and sync on their own).
	Hint(ctx context.Context, nodeID, reason string) error
}

// Hint is the value of a hint key.
type Hint struct {
	Reason string `json:"reason"`
	AtMs   int64  `json:"at_ms"`
}

var _ Hinter = (*Cache)(nil)

// Hint implements Hinter: it creates the node's hint key under the node's
// lease unless a hint is already pending. The lease comes from the cache;
// when the cache is behind (the lease is gone), it is read from etcd once.
func (c *Cache) Hint(ctx context.Context, nodeID, reason string) error {
	c.mu.RLock()
	lease := c.leases[nodeID]
	c.mu.RUnlock()
	v, _ := json.Marshal(Hint{Reason: reason, AtMs: time.Now().UnixMilli()})
	key := c.keys.hint(nodeID)
	for attempt := 0; attempt < 3; attempt++ {
		if lease == 0 {
			resp, err := c.cli.Get(ctx, c.keys.node(nodeID))
			if err != nil {
				return fmt.Errorf("while reading node %s for a hint: %w", nodeID, err)
			}
			if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
				return nil // gone: a live process re-registers and hints itself
			}
			lease = clientv3.LeaseID(resp.Kvs[0].Lease)
		}
		_, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Version(key), ">", 0)).
			Else(clientv3.OpPut(key, string(v), clientv3.WithLease(lease))).
			Commit()
		if err == nil {
			return nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("while hinting node %s: %w", nodeID, err)
		}
		lease = 0 // the node re-registered (or is gone): look again
	}
	return fmt.Errorf("while hinting node %s: its lease keeps changing", nodeID)
}
