package presence

import "github.com/prometheus/client_golang/prometheus"

type registrarMetrics struct {
	reregistrations, hints prometheus.Counter
}

func newRegistrarMetrics() registrarMetrics {
	return registrarMetrics{
		reregistrations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "presence",
			Name: "reregistrations_total", Help: "Times this node re-registered after losing its presence lease."}),
		hints: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "presence",
			Name: "hints_received_total", Help: "Sync hints routers left for this node (its devices were told to sync)."}),
	}
}

// Collectors returns the Registrar's metrics, for the caller's registry.
func (r *Registrar) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.met.reregistrations, r.met.hints,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "imcluster", Subsystem: "presence",
			Name: "registration_healthy", Help: "1 while the node's presence lease is known alive (Registrar.Healthy)."},
			func() float64 {
				if r.Healthy() {
					return 1
				}
				return 0
			})}
}
