package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// patchStatus writes status when it differs from what cluster holds, with
// an optimistic lock (the patch carries cluster's resourceVersion, so a
// concurrent writer makes it fail with a conflict rather than be
// overwritten). Once written, it emits the events of the transitions, so
// that a patch lost to a conflict does not announce a change twice.
func (r *IMClusterReconciler) patchStatus(ctx context.Context, cluster *v1alpha1.IMCluster, status v1alpha1.IMClusterStatus) error {
	if equality.Semantic.DeepEqual(cluster.Status, status) {
		return nil
	}
	before := cluster.DeepCopy()
	cluster.Status = status
	if err := r.Status().Patch(ctx, cluster, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("while patching the status of IMCluster %s: %w", cluster.Name, err)
	}
	statusPatches.Inc()
	r.transitionEvents(cluster, before.Status, status)
	return nil
}

// transitionEvents announces status transitions. Warning events are kept
// for trouble (what an alert should page on): Ready lost to a tier below
// its minimum, Degraded rising. Routine motion — a scale, a rollout, a
// first start, the pause switch, recovery — gets Normal events.
func (r *IMClusterReconciler) transitionEvents(cluster *v1alpha1.IMCluster, prev, next v1alpha1.IMClusterStatus) {
	cond := func(conds []metav1.Condition, t string) metav1.Condition {
		if c := meta.FindStatusCondition(conds, t); c != nil {
			return *c
		}
		return metav1.Condition{Type: t, Status: metav1.ConditionUnknown}
	}
	normal := func(reason, note string, args ...any) {
		r.event(cluster, nil, corev1.EventTypeNormal, reason, "Reconcile", note, args...)
	}
	warning := func(reason, note string, args ...any) {
		r.event(cluster, nil, corev1.EventTypeWarning, reason, "Reconcile", note, args...)
	}

	// Scaling, per tier: a replica count that moved (spec, kubectl scale,
	// an autoscaler).
	for _, t := range []struct {
		name    string
		was, is v1alpha1.TierStatus
	}{{TierMessage, prev.Message, next.Message}, {TierPush, prev.Push, next.Push}} {
		if t.was.Image != "" && t.is.Image != "" && t.was.DesiredReplicas != t.is.DesiredReplicas {
			normal("Scaling", "%s tier: %d → %d replicas", t.name, t.was.DesiredReplicas, t.is.DesiredReplicas)
		}
	}

	// Progressing: the start of a rollout or first start, the end of the
	// motion, the pause switch. (Scaling is announced per tier above; the
	// bootstrap Job by BootstrapStarted.)
	wasP, isP := cond(prev.Conditions, v1alpha1.ConditionProgressing), cond(next.Conditions, v1alpha1.ConditionProgressing)
	switch {
	case isP.Reason == wasP.Reason && isP.Status == wasP.Status:
	case isP.Reason == v1alpha1.ReasonPaused:
		normal("Paused", "%s", isP.Message)
	case wasP.Reason == v1alpha1.ReasonPaused:
		normal("Resumed", "reconciliation resumed: %s: %s", isP.Reason, isP.Message)
	case isP.Status == metav1.ConditionTrue && (isP.Reason == v1alpha1.ReasonRollingOut || isP.Reason == v1alpha1.ReasonCreating):
		normal(isP.Reason, "%s", isP.Message)
	case isP.Reason == v1alpha1.ReasonStable && wasP.Status == metav1.ConditionTrue:
		normal("Stable", "%s", isP.Message)
	}

	// Ready.
	wasR, isR := cond(prev.Conditions, v1alpha1.ConditionReady), cond(next.Conditions, v1alpha1.ConditionReady)
	if wasR.Status != isR.Status {
		switch {
		case isR.Status == metav1.ConditionTrue:
			normal("Ready", "%s", isR.Message)
		case wasR.Status == metav1.ConditionTrue && isR.Reason == v1alpha1.ReasonCreating:
			// A tier scaled up from 0: its first pods are starting.
			normal("NotReady", "%s: %s", isR.Reason, isR.Message)
		case wasR.Status == metav1.ConditionTrue:
			warning("NotReady", "%s: %s", isR.Reason, isR.Message)
		}
	}

	// Degraded.
	wasD, isD := cond(prev.Conditions, v1alpha1.ConditionDegraded), cond(next.Conditions, v1alpha1.ConditionDegraded)
	switch {
	case isD.Status == metav1.ConditionTrue && wasD.Status != metav1.ConditionTrue:
		warning("Degraded", "%s: %s", isD.Reason, isD.Message)
	case isD.Status == metav1.ConditionTrue && isD.Reason == v1alpha1.ReasonSecretMissing &&
		(wasD.Reason != isD.Reason || wasD.Message != isD.Message):
		// Already Degraded, and now (also) a Secret is missing: say which.
		warning("Degraded", "%s: %s", isD.Reason, isD.Message)
	case isD.Status == metav1.ConditionFalse && wasD.Status == metav1.ConditionTrue:
		normal("Recovered", "no longer degraded (was %s: %s)", wasD.Reason, wasD.Message)
	}
}
