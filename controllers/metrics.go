package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Operator metrics, served with controller-runtime's own (reconcile counts
// and latencies, work queue) on the manager's metrics endpoint.
var (
	childWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_operator_child_writes_total",
		Help: "Writes to IMCluster children, by kind and operation (create, update, delete).",
	}, []string{"kind", "op"})
	statusPatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imcluster_operator_status_patches_total",
		Help: "Status patches of IMCluster objects (unchanged statuses are not written).",
	})
)

func init() {
	metrics.Registry.MustRegister(childWrites, statusPatches)
}
