package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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
// meanwhile, then calls the OnResync hook (its devices may have missed
// pushes). It also follows the node's hint key (doc.go, "Sync hints").
type Registrar struct {
	cli      *clientv3.Client
	keys     keys
	node     Node
	ttl      time.Duration
	onKick   KickFunc
	onResync func(reason string)
	log      *slog.Logger

	// alive is when the lease was last known alive (unix ns: granted or
	// kept alive); rereg is set while a re-registration is under way.
	alive atomic.Int64
	rereg atomic.Bool
	met   registrarMetrics
	// beforeRewrite, if set, runs in reregister between taking the new
	// lease and rewriting the sessions (tests: a logout in that window).
	beforeRewrite func()

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
		cli: cli, keys: newKeys(prefix), node: node, ttl: ttl, onKick: onKick, log: log, met: newRegistrarMetrics(),
		sessions: map[string]sessionRec{},
		done:     make(chan struct{}),
	}
}

// OnResync sets f, called (from the registrar's goroutines; it must not
// block for long) when the node's devices may have missed pushes: after a
// re-registration (reason ReasonLeaseLost) and for each hint a router left
// (its reason). Call before Start.
func (r *Registrar) OnResync(f func(reason string)) { r.onResync = f }

// Healthy reports whether the node's registration is current: the lease
// was granted or kept alive within the TTL and no re-registration is under
// way. A push node is not ready while it is false.
func (r *Registrar) Healthy() bool {
	if r.rereg.Load() {
		return false
	}
	a := r.alive.Load()
	return a != 0 && time.Since(time.Unix(0, a)) < r.ttl
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
	r.alive.Store(time.Now().UnixNano())
	// Kicks left from an earlier process with the same node id are moot.
	if _, err := r.cli.Delete(ctx, r.keys.kicks(r.node.ID), clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("while clearing stale kicks: %w", err)
	}
	wrev, err := r.putNode(ctx, lease)
	if err != nil {
		return err
	}
	// A hint left for an earlier process with the same node id is moot
	// too (its devices reconnected and synced), and the lease is new.
	if _, err := r.cli.Delete(ctx, r.keys.hint(r.node.ID)); err != nil {
		return fmt.Errorf("while clearing a stale hint: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.keepAlive(runCtx) }()
	go func() { defer wg.Done(); r.watchKicks(runCtx, wrev+1) }()
	go func() { defer wg.Done(); r.watchHints(runCtx, wrev+1) }()
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
				r.alive.Store(time.Now().UnixNano())
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("presence lease lost; re-registering", "node", r.node.ID, "err", err)
		r.rereg.Store(true)
		if r.reregister(ctx) {
			r.alive.Store(time.Now().UnixNano())
			r.rereg.Store(false)
			r.met.reregistrations.Inc()
			r.resync(ReasonLeaseLost)
		}
	}
}

// resync calls the OnResync hook.
func (r *Registrar) resync(reason string) {
	if r.onResync != nil {
		r.onResync(reason)
	}
}

// reregister grants a new lease and writes the node and the sessions again
// (only those keys nobody else wrote meanwhile). true once done; false when
// ctx ended first.
//
// A session logged out while it is rewritten must not stay: Logout drops
// it from r.sessions first and then deletes the key if it still holds the
// revision Logout knew. When the rewrite lands after that delete was tried
// (or after Logout read the old revision), Logout's compare fails and the
// rewritten key would remain with no connection behind it; so after each
// rewrite, a session no longer in r.sessions with that epoch has the key
// just written deleted again (compare-and-delete at the rewrite's revision).
func (r *Registrar) reregister(ctx context.Context) bool {
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
			if r.beforeRewrite != nil {
				r.beforeRewrite()
			}
			for key, rec := range recs {
				b, _ := json.Marshal(rec.s)
				// Absent (gone with the old lease), or still exactly our
				// value (written by an earlier attempt whose answer was
				// lost, under its lease): write it under the new lease.
				put := clientv3.OpPut(key, string(b), clientv3.WithLease(lease))
				tr, err := r.cli.Txn(cctx).
					If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
					Then(put).
					Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", string(b))}, []clientv3.Op{put}, nil)).
					Commit()
				if err != nil {
					return fmt.Errorf("while re-registering %s: %w", key, err)
				}
				resp := struct {
					Succeeded bool
					Header    struct{ Revision int64 }
				}{Succeeded: tr.Succeeded}
				resp.Header.Revision = tr.Header.Revision
				if !tr.Succeeded && len(tr.Responses) == 1 {
					if nt := tr.Responses[0].GetResponseTxn(); nt != nil && nt.Succeeded {
						resp.Succeeded = true
					}
				}
				r.mu.Lock()
				cur, ok := r.sessions[key]
				live := ok && cur.s.Epoch == rec.s.Epoch
				if live {
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
				if !live && resp.Succeeded {
					// Logged out (or replaced here) during the rewrite.
					if _, err := r.cli.Txn(cctx).
						If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Header.Revision)).
						Then(clientv3.OpDelete(key)).
						Commit(); err != nil {
						return fmt.Errorf("while removing %s, logged out during re-registration: %w", key, err)
					}
				}
			}
			return nil
		}()
		if err == nil {
			return true
		}
		r.log.Warn("re-registration failed", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return false
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

// watchHints follows the node's hint key (doc.go, "Sync hints"): each
// hint is deleted at the revision seen (a newer one stays) and only then
// reported through OnResync.
func (r *Registrar) watchHints(ctx context.Context, fromRev int64) {
	key := r.keys.hint(r.node.ID)
	for ctx.Err() == nil {
		wch := r.cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(fromRev))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				fromRev = ev.Kv.ModRevision + 1
				if ev.Type == mvccpb.PUT {
					r.takeHint(ctx, ev.Kv)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		// A broken or compacted watch: look at the key now, go on from there.
		if resp, err := r.cli.Get(ctx, key); err == nil {
			fromRev = resp.Header.Revision + 1
			for _, kv := range resp.Kvs {
				r.takeHint(ctx, kv)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// takeHint deletes the hint kv (retrying until it is gone or ctx ends: a
// hint left in place after its sync would make routers rely on a sync that
// already happened), then calls OnResync.
func (r *Registrar) takeHint(ctx context.Context, kv *mvccpb.KeyValue) {
	var h Hint
	if err := json.Unmarshal(kv.Value, &h); err != nil || h.Reason == "" {
		h.Reason = ReasonRouteSkipped
	}
	backoff := 100 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.cli.Txn(dctx).
			If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).
			Commit()
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("cannot delete a sync hint; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	r.met.hints.Inc()
	r.resync(h.Reason)
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
