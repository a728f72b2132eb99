package route

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// GiveUpAfter bounds how long a registered node that keeps failing is
	// retried before its devices are left to sync (default 15s: longer than
	// the presence lease, so a crashed node's entries are gone by then).
	GiveUpAfter time.Duration
	Client      *http.Client
	Log         *slog.Logger
	Registry    prometheus.Registerer
}

// Router delivers routed events to push nodes. See doc.go for the contract.
type Router struct {
	opt Options
	met routerMetrics
}

type routerMetrics struct {
	targets, skipped prometheus.Counter
	calls            *prometheus.CounterVec
	latency          prometheus.Histogram
}

// New returns a Router.
func New(opt Options) *Router {
	if opt.GiveUpAfter <= 0 {
		opt.GiveUpAfter = 15 * time.Second
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second,
		}}
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	m := routerMetrics{
		targets: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "targets_total", Help: "Device sessions events were routed to."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "targets_skipped_total", Help: "Device sessions skipped because their node was gone (they sync)."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "calls_total", Help: "Delivery calls to push nodes, by outcome."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "call_seconds", Help: "Delivery call latency.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	if opt.Registry != nil {
		opt.Registry.MustRegister(m.targets, m.skipped, m.calls, m.latency)
	}
	return &Router{opt: opt, met: m}
}

// Deliver routes items, in order, and returns once every push node that
// holds a target accepted its deliveries or was found gone. It fails only
// when ctx ends.
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

// toNode sends ds to one node in chunks, in order.
func (r *Router) toNode(ctx context.Context, nodeID string, ds []protocol.Delivery) {
	for len(ds) > 0 {
		n := min(len(ds), protocol.MaxDeliveryBatch)
		chunk := ds[:n]
		ds = ds[n:]
		if !r.sendChunk(ctx, nodeID, chunk) {
			r.met.skipped.Add(float64(countTargets(chunk) + countTargets(ds)))
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

// sendChunk posts one batch, retrying while the node is registered, up to
// GiveUpAfter. false: the node is gone (or ctx ended); skip the rest.
func (r *Router) sendChunk(ctx context.Context, nodeID string, chunk []protocol.Delivery) bool {
	body, err := json.Marshal(protocol.DeliveryBatch{Deliveries: chunk})
	if err != nil {
		r.opt.Log.Error("cannot encode delivery batch", "err", err)
		return false
	}
	if len(body) > maxDeliveryBytes && len(chunk) > 1 {
		// The node would refuse it (413): send it in halves, in order.
		h := len(chunk) / 2
		return r.sendChunk(ctx, nodeID, chunk[:h]) && r.sendChunk(ctx, nodeID, chunk[h:])
	}
	deadline := time.Now().Add(r.opt.GiveUpAfter)
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		node, ok := r.opt.Directory.Node(nodeID)
		if !ok {
			r.met.calls.WithLabelValues("node_unregistered").Inc()
			return false
		}
		err := r.post(ctx, node, body)
		if err == nil {
			r.met.calls.WithLabelValues("ok").Inc()
			return true
		}
		if errors.Is(err, errGone) {
			r.met.calls.WithLabelValues("gone").Inc()
			return false
		}
		if errors.Is(err, errRefused) {
			r.met.calls.WithLabelValues("refused").Inc()
			return false
		}
		r.met.calls.WithLabelValues("retry").Inc()
		if ctx.Err() != nil || time.Now().After(deadline) {
			r.opt.Log.Warn("giving up on push node", "node", nodeID, "err", err, "attempts", attempt+1)
			return false
		}
		if attempt == 0 {
			r.opt.Log.Warn("delivery failed; retrying", "node", nodeID, "err", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
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
