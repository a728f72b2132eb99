package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types. Each is True, False or Unknown, and carries the
// generation it was computed for (observedGeneration), so
// `kubectl wait --for=condition=Ready` can trust it.
const (
	// ConditionReady: bootstrap done and every tier has all its pods ready
	// at the current template.
	ConditionReady = "Ready"
	// ConditionProgressing: the operator or a rollout is still moving the
	// cluster towards the spec (bootstrap running, pods rolling).
	ConditionProgressing = "Progressing"
	// ConditionDegraded: something needs a human (bootstrap failed, a
	// rollout exceeded its deadline, the reconciler keeps failing).
	ConditionDegraded = "Degraded"
)

// Condition reasons.
const (
	ReasonReconciling      = "Reconciling"
	ReasonBootstrapPending = "BootstrapPending"
	ReasonBootstrapRunning = "BootstrapRunning"
	ReasonBootstrapFailed  = "BootstrapFailed"
	ReasonRollingOut       = "RollingOut"
	ReasonPodsNotReady     = "PodsNotReady"
	ReasonProgressDeadline = "ProgressDeadlineExceeded"
	ReasonReconcileError   = "ReconcileError"
	ReasonAllReady         = "AllTiersReady"
	ReasonStable           = "Stable"
	ReasonNoFailure        = "AsExpected"

	// ReasonSecretMissing: a Secret (or a key of it) that a tier reads at
	// start does not exist; the tier's Deployment is left as it is.
	ReasonSecretMissing = "SecretMissing"
)

// GetCondition returns the condition of type t, or nil.
func (c *IMCluster) GetCondition(t string) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, t)
}

// IsReady tells whether the Ready condition is True for the current
// generation.
func (c *IMCluster) IsReady() bool {
	cond := c.GetCondition(ConditionReady)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.Generation
}

// BootstrapDone tells whether the configuration with the given hash has
// been bootstrapped.
func (s *BootstrapStatus) BootstrapDone(hash string) bool {
	return hash != "" && s.SucceededHash == hash
}
