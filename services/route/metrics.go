package route

import "github.com/prometheus/client_golang/prometheus"

type routerMetrics struct {
	targets, skipped prometheus.Counter
	calls            *prometheus.CounterVec
	hints            *prometheus.CounterVec
	latency          prometheus.Histogram
}

func newRouterMetrics() routerMetrics {
	return routerMetrics{
		targets: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "targets_total", Help: "Device sessions events were routed to."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "targets_skipped_total", Help: "Device sessions skipped (node gone, refusing, failing or breaker open); they sync."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "calls_total", Help: "Delivery calls to push nodes, by outcome (ok, retry, gone, node_unregistered, refused, gave_up, open: skipped without a call)."}, []string{"outcome"}),
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "hints_total", Help: "Sync hints left for push nodes whose batches were skipped, by outcome (ok, deferred: retried in the background, dropped: node gone meanwhile)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "call_seconds", Help: "Delivery call latency.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
}

func (m routerMetrics) register(reg prometheus.Registerer, r *Router) {
	if reg == nil {
		return
	}
	reg.MustRegister(m.targets, m.skipped, m.calls, m.hints, m.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "imcluster", Subsystem: "route",
			Name: "breakers_open", Help: "Push nodes whose breaker is open (batches skipped until a probe succeeds)."},
			func() float64 { return float64(r.br.openCount()) }))
}
