package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cache is the etcd implementation of Directory: it lists the node registry
// and the sessions once, then follows them with one watch. Reads never touch
// etcd. On a compacted or broken watch it re-lists and resumes.
//
// Staleness: every second it asks etcd for a progress notification on its
// watch; when it has heard nothing (no event, no progress) for StaleAfter
// (3 s: a partition between this pod and etcd, or etcd down) it is stale,
// and routing goes on with the last view. Once a progress notification
// (sent only when the watch has caught up) or a fresh listing shows it is
// current again, every node holding a session that logged in since the
// cache was last current gets a sync hint (ReasonStaleRoute): pushes for
// those devices may have gone to their old node, or nowhere, meanwhile.
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

	// StaleAfter: see the type's doc (default 3s; set before Run).
	StaleAfter time.Duration
	heard      atomic.Int64 // unix ns: the last listing or watch response
	staleSince atomic.Int64 // unix ns: when last current, while stale; 0 when fresh
	staleHints atomic.Int64 // hints left after stale periods (tests, metrics)
	staleNodes atomic.Int64 // nodes chosen for hints after the last stale period
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

// Stale reports whether the cache has heard nothing from etcd for
// StaleAfter, and since when it has not been known current.
func (c *Cache) Stale() (bool, time.Time) {
	if s := c.staleSince.Load(); s != 0 {
		return true, time.Unix(0, s)
	}
	return false, time.Time{}
}

// StaleHints returns how many nodes were hinted after stale periods.
func (c *Cache) StaleHints() int64 { return c.staleHints.Load() }

// probe asks for a progress notification every second and marks the cache
// stale once nothing was heard for StaleAfter.
func (c *Cache) probe(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), time.Second)
		_ = c.cli.RequestProgress(pctx) // the watch's stream: same metadata
		cancel()
		heard := c.heard.Load()
		if heard != 0 && time.Since(time.Unix(0, heard)) > c.StaleAfter && c.staleSince.CompareAndSwap(0, heard) {
			c.log.Warn("presence cache stale: nothing heard from etcd", "for", time.Since(time.Unix(0, heard)).Round(time.Millisecond))
		}
	}
}

// current records that the cache is current (a listing, or a progress
// notification: the watch caught up). If it was stale, the nodes of the
// sessions that logged in since it was last current are hinted.
func (c *Cache) current() {
	c.heard.Store(time.Now().UnixNano())
	since := c.staleSince.Swap(0)
	if since == 0 {
		return
	}
	from := time.Unix(0, since).Add(-time.Second).UnixMilli() // clock skew between hosts
	nodes := map[string]bool{}
	c.mu.RLock()
	for _, m := range c.sessions {
		for _, s := range m {
			if s.SinceMs >= from {
				nodes[s.NodeID] = true
			}
		}
	}
	c.mu.RUnlock()
	c.staleNodes.Store(int64(len(nodes)))
	c.log.Info("presence cache current again; hinting the nodes of sessions that logged in meanwhile",
		"stale_for", time.Since(time.Unix(0, since)).Round(time.Millisecond), "nodes", len(nodes))
	for n := range nodes {
		go func() {
			for try := 0; try < 10; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := c.Hint(ctx, n, ReasonStaleRoute)
				cancel()
				if err == nil {
					c.staleHints.Add(1)
					return
				}
				time.Sleep(time.Second)
			}
			c.log.Warn("could not hint a node after a stale period", "node", n)
		}()
	}
}

// Run lists and watches until ctx is done.
func (c *Cache) Run(ctx context.Context) {
	if c.StaleAfter <= 0 {
		c.StaleAfter = 3 * time.Second
	}
	go c.probe(ctx)
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
	c.current()
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
		if wr.IsProgressNotify() {
			c.current()
			continue
		}
		c.heard.Store(time.Now().UnixNano())
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
