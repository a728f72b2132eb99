package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// Routed is one persisted event and who must get it pushed: every device of
// Users except ExceptDevice (the device that caused the event).
type Routed struct {
	Event        protocol.Event
	Users        []string
	ExceptDevice string
}

// Router delivers persisted events to the push tier.
//
// Contract: Route returns after every reachable push node accepted its part
// of batch or was found gone; unreachable nodes are skipped (their devices
// sync later). It returns an error only when ctx is done. The pipeline calls
// it in order per partition, after the batch is persisted and before the
// batch's offsets are committed, so "pushed" implies "stored".
type Router interface {
	Route(ctx context.Context, batch []Routed) error
}

// LateHinter is what a Router may also do. After the users' rows of
// routed events were written more than IndexLateAfter after the routing,
// the pipeline calls it with the users those events reached and a moment
// just before the routing: every device of theirs that logged in since
// then is told to sync (a sync hint). The events were not pushed to those
// sessions (routed before they logged in) and their login syncs may have
// run before the rows existed. Best effort; it must not block for long.
type LateHinter interface {
	HintLoggedInSince(ctx context.Context, users []string, since time.Time)
}

// NopRouter routes nothing: every device gets its events by sync. It is what
// the binary uses when no push tier is configured.
type NopRouter struct{}

// Route implements Router.
func (NopRouter) Route(context.Context, []Routed) error { return nil }

// LogRouter logs what it would route, at debug level.
type LogRouter struct{ Log *slog.Logger }

// Route implements Router.
func (r LogRouter) Route(_ context.Context, batch []Routed) error {
	for _, b := range batch {
		r.Log.Debug("route", "conv", b.Event.ConvID, "seq", b.Event.Seq, "kind", b.Event.Kind, "users", b.Users, "except", b.ExceptDevice)
	}
	return nil
}
