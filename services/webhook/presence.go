package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/webhook/wire"
)

// presenceWatcher turns presence changes into user_online/user_offline
// events on the events topic. One watcher among all dispatchers leads (an
// etcd election); it saves the etcd revision up to which it produced, and
// a new leader resumes from there: it reads the sessions as of that
// revision and watches from the next, so a leader change re-produces
// (same IDs) rather than loses transitions — unless etcd compacted that
// revision meanwhile, then the new leader starts from the current state
// and transitions in the gap are lost (logged).
type presenceWatcher struct {
	cli    *clientv3.Client
	prefix string
	id     string
	prod   *mlog.Producer
	log    *slog.Logger
	now    func() time.Time
}

func (w *presenceWatcher) root() string     { return strings.TrimRight(w.prefix, "/") }
func (w *presenceWatcher) sessions() string { return w.root() + "/push/sessions/" }
func (w *presenceWatcher) revKey() string   { return PresenceRevKey(w.prefix) }
func (w *presenceWatcher) electKey() string { return w.root() + "/webhook/presence-leader" }

func (w *presenceWatcher) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := w.lead(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("webhook presence watcher: lost or could not take the lead; retrying", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// lead campaigns, then watches while leader.
func (w *presenceWatcher) lead(ctx context.Context) error {
	sess, err := concurrency.NewSession(w.cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("while opening an etcd session: %w", err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, w.electKey())
	if err := el.Campaign(ctx, w.id); err != nil {
		return fmt.Errorf("while campaigning: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done(): // lease lost: stop producing as leader
			cancel()
		case <-lctx.Done():
		}
	}()
	w.log.Info("webhook presence watcher leads")
	err = w.watch(lctx, el)
	rctx, rc := context.WithTimeout(context.Background(), 2*time.Second)
	_ = el.Resign(rctx)
	rc()
	return err
}

// watch produces the transitions from the saved revision on.
func (w *presenceWatcher) watch(ctx context.Context, el *concurrency.Election) error {
	saved, err := w.cli.Get(ctx, w.revKey())
	if err != nil {
		return err
	}
	var from int64
	if len(saved.Kvs) == 1 {
		from, _ = strconv.ParseInt(string(saved.Kvs[0].Value), 10, 64)
	}
	var state *clientv3.GetResponse
	if from > 0 {
		state, err = w.cli.Get(ctx, w.sessions(), clientv3.WithPrefix(), clientv3.WithRev(from))
		if errors.Is(err, rpctypes.ErrCompacted) {
			w.log.Warn("webhook presence watcher: saved revision compacted; transitions since are lost", "rev", from)
			from, err = 0, nil
		}
	}
	if from == 0 && err == nil {
		state, err = w.cli.Get(ctx, w.sessions(), clientv3.WithPrefix())
	}
	if err != nil {
		return fmt.Errorf("while listing sessions: %w", err)
	}
	users := map[string]map[string]presence.Session{}
	for _, kv := range state.Kvs {
		w.apply(users, mvccpb.PUT, kv, nil)
	}
	rev := state.Header.Revision
	if from > 0 {
		rev = from
	}
	wch := w.cli.Watch(clientv3.WithRequireLeader(ctx), w.sessions(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	// The starting point is saved at once: every session change after it
	// is seen (the watch starts at rev+1 whenever it is established), and
	// its presence tells that the watcher runs (tests await it).
	if err := w.save(ctx, el, rev); err != nil {
		return err
	}
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("while watching sessions: %w", err)
		}
		var evs []*wire.Event
		for _, e := range wr.Events {
			evs = append(evs, w.apply(users, e.Type, e.Kv, e.PrevKv)...)
		}
		for _, ev := range evs {
			if err := w.produce(ctx, ev); err != nil {
				return err
			}
		}
		if len(wr.Events) > 0 {
			if err := w.save(ctx, el, wr.Events[len(wr.Events)-1].Kv.ModRevision); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// save records rev as produced up to, only while this watcher still leads.
func (w *presenceWatcher) save(ctx context.Context, el *concurrency.Election, rev int64) error {
	if _, err := w.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())).
		Then(clientv3.OpPut(w.revKey(), strconv.FormatInt(rev, 10))).Commit(); err != nil {
		return fmt.Errorf("while saving the presence revision: %w", err)
	}
	return nil
}

// PresenceRevKey is the etcd key under prefix where the leading presence
// watcher saves the revision it produced up to (present once one runs).
func PresenceRevKey(prefix string) string {
	return strings.TrimRight(prefix, "/") + "/webhook/presence-rev"
}

// apply updates users with one change and returns the transitions.
func (w *presenceWatcher) apply(users map[string]map[string]presence.Session, typ mvccpb.Event_EventType, kv, prev *mvccpb.KeyValue) []*wire.Event {
	user, term, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), w.sessions()), "/")
	if !ok || user == "" || term == "" {
		return nil
	}
	rev := strconv.FormatInt(kv.ModRevision, 10)
	if typ == mvccpb.DELETE {
		m := users[user]
		s, had := m[term]
		if !had {
			return nil
		}
		delete(m, term)
		if len(m) > 0 {
			return nil
		}
		delete(users, user)
		return []*wire.Event{{Type: config.WebhookUserOffline, ID: user + ":" + config.WebhookUserOffline + ":" + rev,
			AtMs: w.now().UnixMilli(), UserID: user, DeviceID: s.DeviceID, Terminal: s.Terminal}}
	}
	var s presence.Session
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return nil
	}
	m := users[user]
	if m == nil {
		m = map[string]presence.Session{}
		users[user] = m
	}
	was := len(m)
	m[term] = s
	if was > 0 {
		return nil
	}
	at := s.SinceMs
	if at == 0 {
		at = w.now().UnixMilli()
	}
	return []*wire.Event{{Type: config.WebhookUserOnline, ID: user + ":" + config.WebhookUserOnline + ":" + rev,
		AtMs: at, UserID: user, DeviceID: s.DeviceID, Terminal: s.Terminal}}
}

// produce writes ev to the events topic (key: the user, so one user's
// transitions stay in order), retrying until acknowledged or ctx ends.
func (w *presenceWatcher) produce(ctx context.Context, ev *wire.Event) error {
	v, _ := json.Marshal(ev)
	for i := 1; ; i++ {
		_, _, err := w.prod.Produce(ev.UserID, v)
		if err == nil {
			mPresence.WithLabelValues(ev.Type).Inc()
			return nil
		}
		w.log.Warn("webhook presence event produce failed; retrying", "id", ev.ID, "err", err)
		if !sleep(ctx, min(time.Duration(i)*250*time.Millisecond, 5*time.Second)) {
			return ctx.Err()
		}
	}
}
