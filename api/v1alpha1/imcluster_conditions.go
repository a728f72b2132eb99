package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types. Each is True, False or Unknown, and carries the
// generation it was computed for (observedGeneration), so
// `kubectl wait --for=condition=Ready` can trust it.
//
// The three are split by concern, as Kubernetes' Deployment splits
// Available from Progressing, so that an alert on Ready=False or on
// Degraded=True fires only for trouble: routine scaling, autoscaling and
// rollouts show in Progressing, never in Ready or Degraded.
const (
	// ConditionReady: every tier can serve. Some configuration has been
	// bootstrapped, and each tier has at least its minimum of available
	// pods (status.<tier>.minAvailable: the PodDisruptionBudget's bound,
	// at least one pod). It stays True while a tier scales or rolls within
	// that budget, while a new configuration is bootstrapped, and while
	// reconciliation is paused.
	ConditionReady = "Ready"
	// ConditionProgressing: a bootstrap, scale or rollout is under way;
	// the reason names it. False with reason Stable once every tier runs
	// the current spec, Paused while the pause annotation is set, and
	// BootstrapFailed, SecretMissing or ReconcileError while the operator
	// cannot apply the spec.
	ConditionProgressing = "Progressing"
	// ConditionDegraded: something needs a human: a tier below its
	// minimum after it had run all its pods, a failed bootstrap, a
	// missing Secret, a rollout stuck past its progress deadline, or a
	// reconcile error. Each rise comes with a Warning event.
	ConditionDegraded = "Degraded"
)

// Condition reasons.
const (
	ReasonReconciling      = "Reconciling"
	ReasonBootstrapPending = "BootstrapPending"
	ReasonBootstrapRunning = "BootstrapRunning"
	ReasonBootstrapFailed  = "BootstrapFailed"
	// ReasonRollingOut: a tier's pods are being replaced by pods of a new
	// template (image, configuration, a Secret's content).
	ReasonRollingOut = "RollingOut"
	// ReasonScaling: a tier's replica count changed (kubectl scale, the
	// spec, an autoscaler) and its pods are being added or removed.
	ReasonScaling = "Scaling"
	// ReasonCreating: a tier's Deployment is created, its first pods
	// starting.
	ReasonCreating = "Creating"
	// ReasonTierUnavailable: a tier has fewer available pods than its
	// minimum (Ready=False; Degraded=True once the tier had run all its
	// pods, so that a cluster still starting does not page anyone).
	ReasonTierUnavailable  = "TierUnavailable"
	ReasonProgressDeadline = "ProgressDeadlineExceeded"
	ReasonReconcileError   = "ReconcileError"
	ReasonAllReady         = "AllTiersReady"
	ReasonStable           = "Stable"
	ReasonNoFailure        = "AsExpected"
	// ReasonPaused: the annotation imcluster.io/paused is "true"; the
	// operator changes no child (Progressing=False).
	ReasonPaused = "Paused"

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
