package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// KickFunc is called when another node took over the session (user,
// terminal) whose epoch is given; the node closes it with a kick frame.
type KickFunc func(userID, terminal string, epoch int64)

// Registrar is a push node's writer side of presence: its registry entry and
// its device sessions, all under one lease kept alive while the node lives.
// If the lease is lost (etcd unreachable longer than the TTL) it grants a new
// one and re-registers the node and the sessions that were not taken over
// meanwhile.
type Registrar struct {
	cli    *clientv3.Client
	keys   keys
	node   Node
	ttl    time.Duration
	onKick KickFunc
	log    *slog.Logger

	mu       sync.Mutex
	lease    clientv3.LeaseID
	sessions map[string]sessionRec // session key → what we wrote
	cancel   context.CancelFunc
	done     chan struct{}
}

type sessionRec struct {
	s   Session
	rev int64 // mod revision of our put: we delete only our own value
}

type kickValue struct {
	Epoch int64 `json:"epoch"`
}

// NewRegistrar returns a Registrar for node. Call Start.
func NewRegistrar(cli *clientv3.Client, prefix string, node Node, ttl time.Duration, onKick KickFunc, log *slog.Logger) *Registrar {
	if log == nil {
		log = slog.Default()
	}
	if ttl < 2*time.Second {
		ttl = 2 * time.Second
	}
	return &Registrar{
		cli: cli, keys: newKeys(prefix), node: node, ttl: ttl, onKick: onKick, log: log,
		sessions: map[string]sessionRec{},
		done:     make(chan struct{}),
	}
}

// Start grants the lease, registers the node and starts the keep-alive and
// the watch of kicks addressed to this node.
func (r *Registrar) Start(ctx context.Context) error {
	lease, err := r.grant(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.lease = lease
	r.mu.Unlock()
	// Kicks left from an earlier process with the same node id are moot.
	if _, err := r.cli.Delete(ctx, r.keys.kicks(r.node.ID), clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("while clearing stale kicks: %w", err)
	}
	wrev, err := r.putNode(ctx, lease)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.keepAlive(runCtx) }()
	go func() { defer wg.Done(); r.watchKicks(runCtx, wrev+1) }()
	go func() { wg.Wait(); close(r.done) }()
	return nil
}

func (r *Registrar) grant(ctx context.Context) (clientv3.LeaseID, error) {
	ttl := int64((r.ttl + time.Second - 1) / time.Second)
	resp, err := r.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("while granting the presence lease: %w", err)
	}
	return resp.ID, nil
}

func (r *Registrar) putNode(ctx context.Context, lease clientv3.LeaseID) (int64, error) {
	b, _ := json.Marshal(r.node)
	resp, err := r.cli.Put(ctx, r.keys.node(r.node.ID), string(b), clientv3.WithLease(lease))
	if err != nil {
		return 0, fmt.Errorf("while registering node %s: %w", r.node.ID, err)
	}
	return resp.Header.Revision, nil
}

// Login records session s (s.NodeID must be this node) and returns the
// session it replaced on the same terminal, if any. When that session lives
// on another live node, that node is told to kick it; when it lives here,
// the caller kicks it.
func (r *Registrar) Login(ctx context.Context, s Session) (*Session, error) {
	key := r.keys.session(s.UserID, s.Terminal)
	b, _ := json.Marshal(s)
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	resp, err := r.cli.Put(ctx, key, string(b), clientv3.WithLease(lease), clientv3.WithPrevKV())
	if err != nil {
		return nil, fmt.Errorf("while registering session %s/%s: %w", s.UserID, s.Terminal, err)
	}
	r.mu.Lock()
	r.sessions[key] = sessionRec{s: s, rev: resp.Header.Revision}
	r.mu.Unlock()
	if resp.PrevKv == nil {
		return nil, nil
	}
	var prev Session
	if err := json.Unmarshal(resp.PrevKv.Value, &prev); err != nil {
		return nil, nil // unreadable old entry: nothing to kick
	}
	if prev.NodeID != r.node.ID {
		kv, _ := json.Marshal(kickValue{Epoch: prev.Epoch})
		_, err := r.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Version(r.keys.node(prev.NodeID)), ">", 0)).
			Then(clientv3.OpPut(r.keys.kick(prev.NodeID, s.UserID, s.Terminal), string(kv), clientv3.WithLease(lease))).
			Commit()
		if err != nil {
			r.log.Warn("could not post kick", "node", prev.NodeID, "user", s.UserID, "err", err)
		}
	}
	return &prev, nil
}

// Logout removes session s if the key still holds what this node wrote for
// it (a newer login elsewhere is left alone).
func (r *Registrar) Logout(ctx context.Context, s Session) error {
	key := r.keys.session(s.UserID, s.Terminal)
	r.mu.Lock()
	rec, ok := r.sessions[key]
	if !ok || rec.s.Epoch != s.Epoch {
		r.mu.Unlock()
		return nil
	}
	delete(r.sessions, key)
	r.mu.Unlock()
	_, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rec.rev)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("while removing session %s/%s: %w", s.UserID, s.Terminal, err)
	}
	return nil
}

// Deregister removes the node's registry entry, so message pods stop routing
// to it; its sessions stay until Close.
func (r *Registrar) Deregister(ctx context.Context) error {
	if _, err := r.cli.Delete(ctx, r.keys.node(r.node.ID)); err != nil {
		return fmt.Errorf("while deregistering node %s: %w", r.node.ID, err)
	}
	return nil
}

// Close stops the keep-alive and revokes the lease, which removes every
// remaining entry of this node at once.
func (r *Registrar) Close(ctx context.Context) error {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if lease == 0 {
		return nil
	}
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("while revoking the presence lease: %w", err)
	}
	return nil
}

func (r *Registrar) keepAlive(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		lease := r.lease
		r.mu.Unlock()
		ch, err := r.cli.KeepAlive(ctx, lease)
		if err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("presence lease lost; re-registering", "node", r.node.ID, "err", err)
		r.reregister(ctx)
	}
}

// reregister grants a new lease and writes the node and the sessions again
// (only those keys nobody else wrote meanwhile).
func (r *Registrar) reregister(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := func() error {
			cctx, cancel := context.WithTimeout(ctx, r.ttl)
			defer cancel()
			lease, err := r.grant(cctx)
			if err != nil {
				return err
			}
			if _, err := r.putNode(cctx, lease); err != nil {
				return err
			}
			r.mu.Lock()
			r.lease = lease
			recs := make(map[string]sessionRec, len(r.sessions))
			for k, v := range r.sessions {
				recs[k] = v
			}
			r.mu.Unlock()
			for key, rec := range recs {
				b, _ := json.Marshal(rec.s)
				resp, err := r.cli.Txn(cctx).
					If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
					Then(clientv3.OpPut(key, string(b), clientv3.WithLease(lease))).
					Commit()
				if err != nil {
					return fmt.Errorf("while re-registering %s: %w", key, err)
				}
				r.mu.Lock()
				if cur, ok := r.sessions[key]; ok && cur.s.Epoch == rec.s.Epoch {
					if resp.Succeeded {
						r.sessions[key] = sessionRec{s: rec.s, rev: resp.Header.Revision}
					} else {
						delete(r.sessions, key) // taken over elsewhere
						if r.onKick != nil {
							go r.onKick(rec.s.UserID, rec.s.Terminal, rec.s.Epoch)
						}
					}
				}
				r.mu.Unlock()
			}
			return nil
		}()
		if err == nil {
			return
		}
		r.log.Warn("re-registration failed", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

func (r *Registrar) watchKicks(ctx context.Context, fromRev int64) {
	prefix := r.keys.kicks(r.node.ID)
	for ctx.Err() == nil {
		wch := r.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				fromRev = ev.Kv.ModRevision + 1
				if ev.Type != mvccpb.PUT {
					continue
				}
				user, term, err := splitTail(string(ev.Kv.Key), prefix)
				var kv kickValue
				if err == nil {
					err = json.Unmarshal(ev.Kv.Value, &kv)
				}
				if err != nil {
					r.log.Warn("bad kick entry", "key", string(ev.Kv.Key), "err", err)
				} else if r.onKick != nil {
					r.onKick(user, term, kv.Epoch)
				}
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = r.cli.Delete(dctx, string(ev.Kv.Key))
				cancel()
			}
		}
		if ctx.Err() != nil {
			return
		}
		// A compacted watch start revision: resume from now; kicks are
		// also re-listed so none is missed.
		resp, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err == nil {
			fromRev = resp.Header.Revision + 1
			for _, kv := range resp.Kvs {
				user, term, err := splitTail(string(kv.Key), prefix)
				var v kickValue
				if err == nil && json.Unmarshal(kv.Value, &v) == nil && r.onKick != nil {
					r.onKick(user, term, v.Epoch)
				}
				_, _ = r.cli.Delete(ctx, string(kv.Key))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Lease returns the current lease id (for tests and metrics).
func (r *Registrar) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Abandon stops the keep-alive without revoking the lease, as a crash
// would: the entries stay until the lease expires. For tests.
func (r *Registrar) Abandon() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.mu.Lock()
	r.lease = 0
	r.sessions = map[string]sessionRec{}
	r.mu.Unlock()
}
