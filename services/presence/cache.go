package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cache is the etcd implementation of Directory: it lists the node registry
// and the sessions once, then follows them with one watch. Reads never touch
// etcd. On a compacted or broken watch it re-lists and resumes.
type Cache struct {
	cli  *clientv3.Client
	keys keys
	log  *slog.Logger

	mu       sync.RWMutex
	sessions map[string]map[string]Session // user → terminal → session
	nodes    map[string]Node
	leases   map[string]clientv3.LeaseID // node → lease of its entry (for hints)
	rev      int64
	ready    chan struct{}
	once     sync.Once
	onChange []func()
}

// NewCache returns a Cache over the keys under prefix. Call Run.
func NewCache(cli *clientv3.Client, prefix string, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{
		cli: cli, keys: newKeys(prefix), log: log,
		sessions: map[string]map[string]Session{},
		nodes:    map[string]Node{},
		leases:   map[string]clientv3.LeaseID{},
		ready:    make(chan struct{}),
	}
}

var _ Directory = (*Cache)(nil)

// Sessions implements Directory.
func (c *Cache) Sessions(userID string) []Session {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := c.sessions[userID]
	if len(m) == 0 {
		return nil
	}
	out := make([]Session, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return out
}

// Node implements Directory.
func (c *Cache) Node(nodeID string) (Node, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[nodeID]
	return n, ok
}

// Nodes returns the live nodes.
func (c *Cache) Nodes() []Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	return out
}

// Counts returns the number of live nodes and sessions.
func (c *Cache) Counts() (nodes, sessions int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.sessions {
		sessions += len(m)
	}
	return len(c.nodes), sessions
}

// Ready is closed after the first complete listing.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// WaitReady waits for the first listing or ctx.
func (c *Cache) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("while waiting for the presence cache: %w", ctx.Err())
	}
}

// Run lists and watches until ctx is done.
func (c *Cache) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.listAndWatch(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("presence watch restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *Cache) listAndWatch(ctx context.Context) error {
	resp, err := c.cli.Get(ctx, c.keys.root, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("while listing presence: %w", err)
	}
	sessions := map[string]map[string]Session{}
	nodes := map[string]Node{}
	leases := map[string]clientv3.LeaseID{}
	for _, kv := range resp.Kvs {
		c.apply(sessions, nodes, leases, mvccpb.PUT, kv)
	}
	c.mu.Lock()
	c.sessions, c.nodes, c.leases, c.rev = sessions, nodes, leases, resp.Header.Revision
	c.mu.Unlock()
	c.once.Do(func() { close(c.ready) })
	c.changed()

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, c.keys.root, clientv3.WithPrefix(),
		clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch compacted at %d: %w", wr.CompactRevision, err)
			}
			return fmt.Errorf("while watching presence: %w", err)
		}
		if len(wr.Events) == 0 {
			continue
		}
		c.mu.Lock()
		for _, ev := range wr.Events {
			c.apply(c.sessions, c.nodes, c.leases, ev.Type, ev.Kv)
		}
		c.rev = wr.Header.Revision
		c.mu.Unlock()
		c.changed()
	}
	return fmt.Errorf("watch channel closed")
}

// OnChange registers f to run (without locks held) after each applied update.
// Register before Run.
func (c *Cache) OnChange(f func()) { c.onChange = append(c.onChange, f) }

func (c *Cache) changed() {
	for _, f := range c.onChange {
		f()
	}
}

func (c *Cache) apply(sessions map[string]map[string]Session, nodes map[string]Node, leases map[string]clientv3.LeaseID, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	switch {
	case len(key) > len(c.keys.nodes()) && key[:len(c.keys.nodes())] == c.keys.nodes():
		id := key[len(c.keys.nodes()):]
		if typ == mvccpb.DELETE {
			delete(nodes, id)
			delete(leases, id)
			return
		}
		var n Node
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			c.log.Warn("bad node entry", "key", key, "err", err)
			return
		}
		nodes[id] = n
		leases[id] = clientv3.LeaseID(kv.Lease)
	case len(key) > len(c.keys.sessions()) && key[:len(c.keys.sessions())] == c.keys.sessions():
		user, term, err := splitTail(key, c.keys.sessions())
		if err != nil {
			c.log.Warn("bad session key", "err", err)
			return
		}
		if typ == mvccpb.DELETE {
			if m := sessions[user]; m != nil {
				delete(m, term)
				if len(m) == 0 {
					delete(sessions, user)
				}
			}
			return
		}
		var s Session
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			c.log.Warn("bad session entry", "key", key, "err", err)
			return
		}
		m := sessions[user]
		if m == nil {
			m = map[string]Session{}
			sessions[user] = m
		}
		m[term] = s
	}
}
