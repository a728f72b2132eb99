package v1alpha1

// AnnotationPaused, set to "true" on an IMCluster, stops the operator from
// changing any of its children (ConfigMap, bootstrap Job, Services,
// PodDisruptionBudgets, Deployments, autoscalers) while a human
// investigates, as CloudNativePG's and Strimzi's pause annotations do. The
// operator still reports status (Progressing=False, reason Paused; Ready and
// Degraded from what the children show). Removing the annotation, or any
// other value, applies the spec as it then is.
//
// An autoscaler the operator created keeps scaling its Deployment: it is
// Kubernetes', not the operator's.
const AnnotationPaused = "imcluster.io/paused"

// IsPaused tells whether reconciliation of the cluster's children is paused.
func (c *IMCluster) IsPaused() bool {
	return c.Annotations[AnnotationPaused] == "true"
}
