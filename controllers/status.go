package controllers

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// observation is what one reconcile saw of the children.
type observation struct {
	bootstrap     v1alpha1.BootstrapStatus
	bootstrapHash string
	deployments   map[string]*appsv1.Deployment // by tier; nil: not (yet) created
	// applied: the tiers whose Deployment this reconcile brought to the
	// spec (their status.<tier>.observedGeneration becomes the cluster's).
	applied map[string]bool
	err     error // the reconcile's error, if any
	// secretProblems: Secrets (or keys) a tier reads at start that are
	// missing; that tier's Deployment was left as it is.
	secretProblems []secretProblem
	// paused: the pause annotation is set; nothing was changed.
	paused bool
}

// computeStatus derives the status from what the reconcile observed.
// Conditions keep their lastTransitionTime unless their status changes.
//
// The three conditions answer three questions, so that each can be
// alerted on alone (docs/operator.md, "Status"):
//   - Ready: can every tier serve? (bootstrapped once, each tier at its
//     minimum of available pods) — not: is the spec fully applied.
//   - Progressing: is a bootstrap, scale or rollout under way?
//   - Degraded: does something need a human?
func computeStatus(c *v1alpha1.IMCluster, obs observation) v1alpha1.IMClusterStatus {
	st := *c.Status.DeepCopy()
	st.ObservedGeneration = c.Generation
	st.Bootstrap = obs.bootstrap
	gen := func(tier string) int64 {
		if obs.applied[tier] {
			return c.Generation
		}
		return 0
	}
	msg := assessTier(c, TierMessage, obs.deployments[TierMessage], c.Status.Message, gen(TierMessage))
	push := assessTier(c, TierPush, obs.deployments[TierPush], c.Status.Push, gen(TierPush))
	st.Message, st.Push = msg.status, push.status
	tiers := []tierState{msg, push}

	everBootstrapped := obs.bootstrap.SucceededHash != ""
	bootDone := obs.bootstrap.BootstrapDone(obs.bootstrapHash)
	bootFailed := obs.bootstrap.Phase == v1alpha1.BootstrapFailed
	secretsMissing := len(obs.secretProblems) > 0
	secretsMsg := ""
	if secretsMissing {
		secretsMsg = truncate(secretProblemsMessage(obs.secretProblems))
	}
	stuck := pick(tiers, func(t tierState) bool { return t.stuck })
	unavailable := pick(tiers, func(t tierState) bool { return t.unavailable })
	notReady := pick(tiers, func(t tierState) bool { return !t.ready })
	moving := pick(tiers, func(t tierState) bool { return t.motion != "" })

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
	case len(stuck) > 0:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonProgressDeadline, details(stuck))
	case len(unavailable) > 0:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonTierUnavailable, details(unavailable))
	case obs.err != nil:
		set(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonReconcileError, truncate(obs.err.Error()))
	default:
		set(v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonNoFailure, "")
	}

	// Progressing: the cluster is moving towards the spec.
	switch {
	case obs.paused:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonPaused,
			fmt.Sprintf("reconciliation paused by the annotation %s=true: the operator changes no child; remove it to apply the spec", v1alpha1.AnnotationPaused))
	case bootFailed:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonBootstrapFailed, "bootstrap failed; tiers keep their previous configuration")
	case obs.err != nil:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonReconcileError, "the operator cannot apply the spec: "+truncate(obs.err.Error()))
	case secretsMissing:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonSecretMissing, secretsMsg)
	case !bootDone:
		set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonBootstrapRunning, "bootstrap Job "+obs.bootstrap.JobName+" is running")
	case len(stuck) > 0:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonProgressDeadline, details(stuck))
	case len(moving) > 0:
		set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, motionReason(moving), details(moving))
	default:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonStable, "every tier runs the current spec")
	}

	// Ready: every tier can serve.
	switch {
	case !everBootstrapped && bootFailed:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapFailed, obs.bootstrap.Message)
	case !everBootstrapped:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapPending, "waiting for bootstrap Job "+obs.bootstrap.JobName)
	case len(notReady) > 0:
		reason := v1alpha1.ReasonCreating
		switch {
		case secretsMissing:
			// Running pods keep what they read; when pods are missing
			// the Secret is why new ones are not made.
			reason = v1alpha1.ReasonSecretMissing
		case len(unavailable) > 0:
			reason = v1alpha1.ReasonTierUnavailable
		}
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, details(notReady))
	default:
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllReady, "every tier can serve: "+details(tiers))
	}
	return st
}

// motionReason names the most disruptive motion under way.
func motionReason(moving []tierState) string {
	for _, r := range []string{v1alpha1.ReasonRollingOut, v1alpha1.ReasonScaling} {
		for _, t := range moving {
			if t.motion == r {
				return r
			}
		}
	}
	return v1alpha1.ReasonCreating
}

func pick(ts []tierState, f func(tierState) bool) []tierState {
	var out []tierState
	for _, t := range ts {
		if f(t) {
			out = append(out, t)
		}
	}
	return out
}

func details(ts []tierState) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.detail)
	}
	return truncate(strings.Join(parts, "; "))
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
