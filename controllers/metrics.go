package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Operator metrics, served with controller-runtime's own (reconcile counts
// and latencies, work queue) on the manager's metrics endpoint.
var (
	childWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_operator_child_writes_total",
		Help: "Writes to IMCluster children, by kind and operation (create, update, delete).",
	}, []string{"kind", "op"})
	clusterCondition = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imcluster_operator_cluster_condition",
		Help: "1 when the IMCluster's condition (Ready, Progressing, Degraded) is True, else 0; for alerts.",
	}, []string{"namespace", "name", "condition"})
	statusPatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imcluster_operator_status_patches_total",
		Help: "Status patches of IMCluster objects (unchanged statuses are not written).",
	})
)

func init() {
	metrics.Registry.MustRegister(childWrites, statusPatches, clusterCondition)
}

// recordConditions exports the cluster's conditions as gauges.
func recordConditions(namespace, name string, conds []metav1.Condition) {
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionProgressing, v1alpha1.ConditionDegraded} {
		v := 0.0
		if c := meta.FindStatusCondition(conds, t); c != nil && c.Status == metav1.ConditionTrue {
			v = 1
		}
		clusterCondition.WithLabelValues(namespace, name, t).Set(v)
	}
}

// forgetCluster drops a deleted cluster's gauges.
func forgetCluster(namespace, name string) {
	clusterCondition.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "name": name})
}
