package route

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// Item is one event to route: to every online device of Users, except the
// device ExceptDevice of the event's author (Event.From).
type Item struct {
	Event        protocol.Event
	Users        []string
	ExceptDevice string
}

// Options configure a Router.
type Options struct {
	Directory presence.Directory
	Tokens    *TokenSource
	// Hints tells push nodes whose batches were skipped to make their
	// devices sync (default: Directory, when it is a presence.Hinter, as
	// *presence.Cache is; nil otherwise: skipped devices then learn only at
	// their next login).
	Hints presence.Hinter
	// GiveUpAfter bounds how long one batch keeps retrying a registered
	// node that fails (timeouts, 5xx) before the node's breaker opens and
	// the batch is skipped (default 5s). Each call gets at most the budget
	// left (and at most CallTimeout).
	GiveUpAfter time.Duration
	// CallTimeout bounds one delivery call (default 5s).
	CallTimeout time.Duration
	// ProbeBudget bounds the one batch that probes a node whose breaker
	// is due to close (default 1s).
	ProbeBudget time.Duration
	// BreakerMin and BreakerMax bound how long a breaker stays open; it
	// doubles with each failed probe (defaults 1s and 30s).
	BreakerMin, BreakerMax time.Duration
	Client                 *http.Client
	Log                    *slog.Logger
	Registry               prometheus.Registerer
}

// Router delivers routed events to push nodes. See doc.go for the contract.
type Router struct {
	opt Options
	met routerMetrics
	br  *breaker

	hmu      sync.Mutex
	deferred map[string]string // node → reason of a hint not written yet
	retrying bool              // a goroutine retries the deferred hints
}

// New returns a Router.
func New(opt Options) *Router {
	if opt.GiveUpAfter <= 0 {
		opt.GiveUpAfter = 5 * time.Second
	}
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = 5 * time.Second
	}
	if opt.ProbeBudget <= 0 {
		opt.ProbeBudget = time.Second
	}
	if opt.BreakerMin <= 0 {
		opt.BreakerMin = time.Second
	}
	if opt.BreakerMax < opt.BreakerMin {
		opt.BreakerMax = max(30*time.Second, opt.BreakerMin)
	}
	if opt.Hints == nil {
		opt.Hints, _ = opt.Directory.(presence.Hinter)
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: opt.CallTimeout, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second,
		}}
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	r := &Router{opt: opt, met: newRouterMetrics(), br: newBreaker(opt.BreakerMin, opt.BreakerMax), deferred: map[string]string{}}
	r.met.register(opt.Registry, r)
	return r
}

// Deliver routes items, in order, and returns once every push node that
// holds a target accepted its deliveries, was found gone, or was skipped
// (and hinted). It fails only when ctx ends.
func (r *Router) Deliver(ctx context.Context, items []Item) error {
	perNode := map[string][]protocol.Delivery{}
	for i := range items {
		it := &items[i]
		var byNode map[string][]protocol.Target
		for ui, u := range it.Users {
			if slices.Contains(it.Users[:ui], u) { // a handful of users: no map
				continue
			}
			for _, s := range r.opt.Directory.Sessions(u) {
				if it.ExceptDevice != "" && s.DeviceID == it.ExceptDevice && s.UserID == it.Event.From {
					continue
				}
				if byNode == nil {
					byNode = map[string][]protocol.Target{}
				}
				byNode[s.NodeID] = append(byNode[s.NodeID], protocol.Target{UserID: s.UserID, DeviceID: s.DeviceID, Epoch: s.Epoch})
			}
		}
		for node, ts := range byNode {
			perNode[node] = append(perNode[node], protocol.Delivery{Event: it.Event, Targets: ts})
		}
	}
	r.br.prune(time.Now(), func(node string) bool { _, ok := r.opt.Directory.Node(node); return !ok })
	if len(perNode) == 0 {
		return ctx.Err()
	}
	var wg sync.WaitGroup
	for node, ds := range perNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.toNode(ctx, node, ds)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func countTargets(ds []protocol.Delivery) (n int) {
	for _, d := range ds {
		n += len(d.Targets)
	}
	return n
}

// outcome of sending a batch to a node.
type outcome int

const (
	delivered outcome = iota
	gone              // not registered or not listening: its devices' sockets are gone too
	skipped           // registered but failing, refusing or breaker open: hint it
	canceled          // ctx ended: the caller does not commit, the batch comes again
)

// toNode sends ds to one node in chunks, in order; once a chunk is not
// delivered, the rest is skipped too, and a skipped node is hinted.
func (r *Router) toNode(ctx context.Context, nodeID string, ds []protocol.Delivery) {
	for len(ds) > 0 {
		n := min(len(ds), protocol.MaxDeliveryBatch)
		chunk := ds[:n]
		ds = ds[n:]
		if o := r.sendChunk(ctx, nodeID, chunk); o != delivered {
			r.met.skipped.Add(float64(countTargets(chunk) + countTargets(ds)))
			if o == skipped {
				r.hint(ctx, nodeID, presence.ReasonRouteSkipped)
			}
			return
		}
		r.met.targets.Add(float64(countTargets(chunk)))
	}
}

// maxDeliveryBytes is protocol.MaxDeliveryBytes (a variable for tests).
var maxDeliveryBytes = protocol.MaxDeliveryBytes

// errGone means the node is not there any more: its devices will sync.
var errGone = errors.New("node gone")

// errRefused means the node answered 4xx: retrying cannot help.
var errRefused = errors.New("delivery refused")

// sendChunk posts one batch: at once skipped while the node's breaker is
// open; otherwise retried while the node stays registered, within
// GiveUpAfter (ProbeBudget for the probe of a breaker due to close), after
// which the breaker opens.
func (r *Router) sendChunk(ctx context.Context, nodeID string, chunk []protocol.Delivery) outcome {
	body, err := json.Marshal(protocol.DeliveryBatch{Deliveries: chunk})
	if err != nil {
		r.opt.Log.Error("cannot encode delivery batch", "err", err)
		return skipped
	}
	if len(body) > maxDeliveryBytes && len(chunk) > 1 {
		// The node would refuse it (413): send it in halves, in order.
		h := len(chunk) / 2
		if o := r.sendChunk(ctx, nodeID, chunk[:h]); o != delivered {
			return o
		}
		return r.sendChunk(ctx, nodeID, chunk[h:])
	}
	if _, ok := r.opt.Directory.Node(nodeID); !ok {
		r.br.forget(nodeID)
		r.met.calls.WithLabelValues("node_unregistered").Inc()
		return gone
	}
	allowed, probe := r.br.allow(nodeID, time.Now())
	if !allowed {
		r.met.calls.WithLabelValues("open").Inc()
		return skipped
	}
	budget := r.opt.GiveUpAfter
	if probe {
		budget = r.opt.ProbeBudget
	}
	deadline := time.Now().Add(budget)
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		node, ok := r.opt.Directory.Node(nodeID)
		if !ok {
			r.br.forget(nodeID)
			r.met.calls.WithLabelValues("node_unregistered").Inc()
			return gone
		}
		cctx, cancel := context.WithTimeout(ctx, min(max(time.Until(deadline), 250*time.Millisecond), r.opt.CallTimeout))
		err := r.post(cctx, node, body)
		cancel()
		switch {
		case err == nil:
			r.br.forget(nodeID)
			r.met.calls.WithLabelValues("ok").Inc()
			return delivered
		case errors.Is(err, errGone):
			r.br.forget(nodeID)
			r.met.calls.WithLabelValues("gone").Inc()
			return gone
		case errors.Is(err, errRefused):
			r.br.forget(nodeID) // it answers: not wedged
			r.met.calls.WithLabelValues("refused").Inc()
			return skipped
		case ctx.Err() != nil:
			if probe {
				r.br.release(nodeID)
			}
			return canceled
		}
		r.met.calls.WithLabelValues("retry").Inc()
		if probe || time.Now().After(deadline) || (attempt > 0 && r.br.isOpen(nodeID)) {
			open := r.br.fail(nodeID, time.Now())
			r.met.calls.WithLabelValues("gave_up").Inc()
			r.opt.Log.Warn("skipping push node; its devices are hinted to sync", "node", nodeID, "err", err,
				"attempts", attempt+1, "probe", probe, "breaker_open_for", open)
			return skipped
		}
		if attempt == 0 {
			r.opt.Log.Warn("delivery failed; retrying", "node", nodeID, "err", err)
		}
		select {
		case <-ctx.Done():
			return canceled // not a probe: a probe does not retry
		case <-time.After(min(backoff, max(time.Until(deadline), time.Millisecond))):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// HintLoggedInSince leaves a sync hint (reason) for every node holding a
// session of users that logged in at or after since, and returns how many
// nodes it hinted. The pipeline calls it when users' feed rows were
// written long after their events were routed: those sessions' login syncs
// may have run before the rows existed, and the events were not pushed to
// them (routed before they logged in).
func (r *Router) HintLoggedInSince(ctx context.Context, users []string, since time.Time, reason string) int {
	if r.opt.Hints == nil {
		return 0
	}
	nodes := map[string]struct{}{}
	for _, u := range users {
		for _, s := range r.opt.Directory.Sessions(u) {
			if s.SinceMs >= since.UnixMilli() {
				nodes[s.NodeID] = struct{}{}
			}
		}
	}
	for n := range nodes {
		r.hint(ctx, n, reason)
	}
	return len(nodes)
}

// hint tells nodeID (through presence) that its devices may have missed
// pushes. A hint that cannot be written now (etcd unreachable) is retried
// in the background until written or the node is gone; Deliver does not
// wait for it (holding the partition would not help while etcd is down).
func (r *Router) hint(ctx context.Context, nodeID, reason string) {
	if r.opt.Hints == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	err := r.opt.Hints.Hint(hctx, nodeID, reason)
	cancel()
	if err == nil {
		r.met.hints.WithLabelValues("ok").Inc()
		return
	}
	r.opt.Log.Warn("cannot leave a sync hint; retrying in the background", "node", nodeID, "err", err)
	r.met.hints.WithLabelValues("deferred").Inc()
	r.hmu.Lock()
	defer r.hmu.Unlock()
	r.deferred[nodeID] = reason
	if !r.retrying {
		r.retrying = true
		go r.retryHints()
	}
}

// retryHints writes the deferred hints, every second, until none is left.
func (r *Router) retryHints() {
	for {
		time.Sleep(time.Second)
		r.hmu.Lock()
		todo := maps.Clone(r.deferred)
		r.hmu.Unlock()
		for node, reason := range todo {
			outcome := "dropped" // gone: a live process re-registers and syncs its devices
			if _, ok := r.opt.Directory.Node(node); ok {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := r.opt.Hints.Hint(ctx, node, reason)
				cancel()
				if err != nil {
					continue
				}
				outcome = "ok"
			}
			r.hmu.Lock()
			delete(r.deferred, node)
			r.hmu.Unlock()
			r.met.hints.WithLabelValues(outcome).Inc()
		}
		r.hmu.Lock()
		if len(r.deferred) == 0 {
			r.retrying = false
			r.hmu.Unlock()
			return
		}
		r.hmu.Unlock()
	}
}

func (r *Router) post(ctx context.Context, node presence.Node, body []byte) error {
	tok, err := r.opt.Tokens.Token()
	if err != nil {
		return err
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, node.DeliverURL+protocol.DeliveryPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: bad deliver URL %q: %v", errGone, node.DeliverURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := r.opt.Client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Nobody listens: the process is gone, and so are its devices'
			// connections (a draining node keeps listening until its last
			// connection is closed).
			return fmt.Errorf("%w: %v", errGone, err)
		}
		return fmt.Errorf("while delivering to %s: %w", node.ID, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r.met.latency.Observe(time.Since(start).Seconds())
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	err = fmt.Errorf("push node %s answered %d: %s", node.ID, resp.StatusCode, bytes.TrimSpace(b))
	if resp.StatusCode/100 == 4 {
		// A refused batch (bad token: a key mismatch; a bad batch) will
		// not succeed on retry; holding the partition would not help.
		r.opt.Log.Error("push node refused a delivery batch; its devices will sync", "err", err)
		return fmt.Errorf("%w: %v", errRefused, err)
	}
	return err
}
