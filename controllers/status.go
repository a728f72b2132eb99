package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// observation is what one reconcile saw of the children.
type observation struct {
	bootstrap     v1alpha1.BootstrapStatus
	bootstrapHash string
	deployments   map[string]*appsv1.Deployment // by tier; nil: not (yet) created
	err           error                         // the reconcile's error, if any
	// secretProblems: Secrets (or keys) a tier reads at start that are
	// missing; that tier's Deployment was left as it is.
	secretProblems []secretProblem
}

// tierRollout summarises a Deployment: done (at the current template with
// every pod updated and available), ready (all desired pods ready) and
// stuck (progress deadline exceeded).
type tierRollout struct {
	exists, done, ready, stuck bool
	detail                     string
}

func rolloutOf(tier string, d *appsv1.Deployment) tierRollout {
	if d == nil {
		return tierRollout{detail: fmt.Sprintf("%s Deployment not created yet", tier)}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	t := tierRollout{exists: true}
	t.done = s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want &&
		s.Replicas == want && s.AvailableReplicas >= want
	t.ready = t.done && s.ReadyReplicas >= want
	for _, c := range s.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse &&
			c.Reason == "ProgressDeadlineExceeded" {
			t.stuck = true
			t.detail = fmt.Sprintf("%s rollout: %s", tier, c.Message)
		}
	}
	if t.detail == "" {
		t.detail = fmt.Sprintf("%s: %d/%d ready, %d updated", tier, s.ReadyReplicas, want, s.UpdatedReplicas)
	}
	return t
}

// computeStatus derives the status from what the reconcile observed.
// Conditions keep their lastTransitionTime unless their status changes.
func computeStatus(c *v1alpha1.IMCluster, obs observation) v1alpha1.IMClusterStatus {
	st := *c.Status.DeepCopy()
	st.ObservedGeneration = c.Generation
	st.Bootstrap = obs.bootstrap
	for _, tier := range []string{TierMessage, TierPush} {
		ts := v1alpha1.TierStatus{Selector: labels.SelectorFromSet(selectorLabels(c, tier)).String()}
		if d := obs.deployments[tier]; d != nil {
			ts.Replicas, ts.ReadyReplicas, ts.UpdatedReplicas = d.Status.Replicas, d.Status.ReadyReplicas, d.Status.UpdatedReplicas
		}
		if tier == TierMessage {
			st.Message = ts
		} else {
			st.Push = ts
		}
	}

	msg, push := rolloutOf(TierMessage, obs.deployments[TierMessage]), rolloutOf(TierPush, obs.deployments[TierPush])
	bootDone := obs.bootstrap.BootstrapDone(obs.bootstrapHash)
	bootFailed := obs.bootstrap.Phase == v1alpha1.BootstrapFailed
	secretsMissing := len(obs.secretProblems) > 0
	secretsMsg := ""
	if secretsMissing {
		secretsMsg = truncate(secretProblemsMessage(obs.secretProblems))
	}

	set := func(t string, s metav1.ConditionStatus, reason, message string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: message, ObservedGeneration: c.Generation,
		})
	}

	// Degraded: needs a human.
	switch {
	case bootFailed:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonBootstrapFailed, obs.bootstrap.Message)
	case secretsMissing:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonSecretMissing, secretsMsg)
	case msg.stuck || push.stuck:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonProgressDeadline, join(msg, push, func(t tierRollout) bool { return t.stuck }))
	case obs.err != nil:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonReconcileError, truncate(obs.err.Error()))
	default:
		set(v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonNoFailure, "")
	}

	// Progressing: the cluster is moving towards the spec.
	switch {
	case bootFailed:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonBootstrapFailed, "bootstrap failed; tiers keep their previous configuration")
	case obs.err != nil:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonReconcileError, "the operator cannot apply the spec: "+truncate(obs.err.Error()))
	case secretsMissing:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonSecretMissing, secretsMsg)
	case !bootDone:
		set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonBootstrapRunning, "bootstrap Job "+obs.bootstrap.JobName+" is running")
	case !msg.done || !push.done:
		set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonRollingOut, join(msg, push, func(t tierRollout) bool { return !t.done }))
	default:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonStable, "every tier runs the current spec")
	}

	// Ready: bootstrapped, every tier at the current template and ready.
	switch {
	case bootFailed:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapFailed, obs.bootstrap.Message)
	case obs.err != nil:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonReconcileError, truncate(obs.err.Error()))
	case !bootDone:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapPending, "waiting for bootstrap Job "+obs.bootstrap.JobName)
	case secretsMissing && (!msg.ready || !push.ready):
		// Running pods keep what they read; only when pods are missing
		// is the Secret the reason the cluster is not ready.
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonSecretMissing, secretsMsg)
	case !msg.ready || !push.ready:
		reason := v1alpha1.ReasonPodsNotReady
		if !msg.done || !push.done {
			reason = v1alpha1.ReasonRollingOut
		}
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, join(msg, push, func(t tierRollout) bool { return !t.ready }))
	default:
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllReady, "every tier has all its pods ready")
	}
	return st
}

func join(a, b tierRollout, pick func(tierRollout) bool) string {
	switch {
	case pick(a) && pick(b):
		return a.detail + "; " + b.detail
	case pick(a):
		return a.detail
	default:
		return b.detail
	}
}

// truncate keeps condition messages within the API's 32 KiB limit, and
// readable.
func truncate(s string) string {
	const limit = 1024
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}

// patchStatus writes status when it differs from what cluster holds, with
// an optimistic lock (the patch carries cluster's resourceVersion, so a
// concurrent writer makes it fail with a conflict rather than be
// overwritten). It also emits events on Ready and Degraded transitions.
func (r *IMClusterReconciler) patchStatus(ctx context.Context, cluster *v1alpha1.IMCluster, status v1alpha1.IMClusterStatus) error {
	if equality.Semantic.DeepEqual(cluster.Status, status) {
		return nil
	}
	before := cluster.DeepCopy()
	r.transitionEvents(cluster, status)
	cluster.Status = status
	if err := r.Status().Patch(ctx, cluster, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("while patching the status of IMCluster %s: %w", cluster.Name, err)
	}
	statusPatches.Inc()
	return nil
}

func (r *IMClusterReconciler) transitionEvents(cluster *v1alpha1.IMCluster, next v1alpha1.IMClusterStatus) {
	status := func(conds []metav1.Condition, t string) (metav1.ConditionStatus, *metav1.Condition) {
		c := meta.FindStatusCondition(conds, t)
		if c == nil {
			return metav1.ConditionUnknown, nil
		}
		return c.Status, c
	}
	was, _ := status(cluster.Status.Conditions, v1alpha1.ConditionReady)
	is, c := status(next.Conditions, v1alpha1.ConditionReady)
	if was != is && c != nil {
		if is == metav1.ConditionTrue {
			r.event(cluster, nil, corev1.EventTypeNormal, "Ready", "Reconcile", "%s", c.Message)
		} else if was == metav1.ConditionTrue {
			r.event(cluster, nil, corev1.EventTypeWarning, "NotReady", "Reconcile", "%s: %s", c.Reason, c.Message)
		}
	}
	was, prev := status(cluster.Status.Conditions, v1alpha1.ConditionDegraded)
	is, c = status(next.Conditions, v1alpha1.ConditionDegraded)
	if was != is && is == metav1.ConditionTrue && c != nil {
		r.event(cluster, nil, corev1.EventTypeWarning, "Degraded", "Reconcile", "%s: %s", c.Reason, c.Message)
	} else if is == metav1.ConditionTrue && c != nil && c.Reason == v1alpha1.ReasonSecretMissing &&
		(prev == nil || prev.Reason != c.Reason || prev.Message != c.Message) {
		// Already Degraded, and now (also) a Secret is missing: say which.
		r.event(cluster, nil, corev1.EventTypeWarning, "Degraded", "Reconcile", "%s: %s", c.Reason, c.Message)
	}
}
