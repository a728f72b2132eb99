// Package pipe adapts route.Router to the message pipeline's Router
// interface (services/message/pipeline). It is its own package so the push
// tier, which uses route's token source, does not depend on the pipeline.
package pipe

import (
	"context"

	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/route"
)

// Router implements pipeline.Router with a route.Router.
type Router struct{ R *route.Router }

var _ pipeline.Router = Router{}

// Route implements pipeline.Router: see route.Router.Deliver.
func (r Router) Route(ctx context.Context, batch []pipeline.Routed) error {
	items := make([]route.Item, len(batch))
	for i, b := range batch {
		items[i] = route.Item{Event: b.Event, Users: b.Users, ExceptDevice: b.ExceptDevice}
	}
	return r.R.Deliver(ctx, items)
}
