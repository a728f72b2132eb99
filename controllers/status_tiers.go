package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// tierState is what the conditions need to know of one tier.
//
// It separates "can serve" (ready: at least minAvailable pods available)
// from "is moving" (motion: a scale, rollout or first start under way), so
// that routine motion never reads as trouble: a tier that scales or rolls
// within its budget stays ready, and one below its budget is trouble
// (unavailable) only once it had run all its pods, not while it starts.
type tierState struct {
	tier        string
	exists      bool
	ready       bool   // available >= minAvailable
	unavailable bool   // not ready although the tier had settled before: trouble
	motion      string // "", ReasonCreating, ReasonScaling or ReasonRollingOut
	stuck       bool   // the Deployment's progress deadline passed
	status      v1alpha1.TierStatus
	detail      string // what a condition message says of the tier
}

// assessTier reads a tier's Deployment (nil: not created) against the
// tier's previous status, and returns its state and its new status.
// observedGen is the IMCluster generation the Deployment was brought to in
// this reconcile, 0 when it was not (the previous value is kept).
func assessTier(c *v1alpha1.IMCluster, tier string, d *appsv1.Deployment, prev v1alpha1.TierStatus, observedGen int64) tierState {
	ts := v1alpha1.TierStatus{
		Selector:           labels.SelectorFromSet(selectorLabels(c, tier)).String(),
		SettledReplicas:    prev.SettledReplicas,
		ObservedGeneration: prev.ObservedGeneration,
	}
	if observedGen != 0 {
		ts.ObservedGeneration = observedGen
	}
	st := tierState{tier: tier}
	if d == nil {
		ts.Pods = "0/0"
		st.status = ts
		st.motion = creatingIfNew(prev)
		st.unavailable = prev.SettledReplicas > 0
		st.detail = fmt.Sprintf("%s: Deployment not created yet", tier)
		return st
	}
	st.exists = true
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	observed := s.ObservedGeneration >= d.Generation
	ts.DesiredReplicas, ts.Replicas, ts.ReadyReplicas = want, s.Replicas, s.ReadyReplicas
	ts.UpdatedReplicas, ts.AvailableReplicas = s.UpdatedReplicas, s.AvailableReplicas
	ts.Pods = fmt.Sprintf("%d/%d", s.ReadyReplicas, want)
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		ts.Image = cs[0].Image
	}
	if observed && s.AvailableReplicas >= want {
		ts.SettledReplicas = want
	}
	ts.MinAvailable = minAvailable(tierSpec(c, tier).PodDisruptionBudget, want, ts.SettledReplicas)

	st.ready = s.AvailableReplicas >= ts.MinAvailable
	st.unavailable = !st.ready && ts.SettledReplicas > 0
	st.motion = motionOf(d, want, prev, ts.SettledReplicas)
	for _, cond := range s.Conditions {
		if cond.Type == appsv1.DeploymentProgressing && cond.Status == corev1.ConditionFalse &&
			cond.Reason == "ProgressDeadlineExceeded" {
			st.stuck = true
			st.detail = fmt.Sprintf("%s rollout: %s", tier, cond.Message)
		}
	}
	if st.detail == "" {
		st.detail = fmt.Sprintf("%s: %d/%d available (minimum %d), %d updated", tier, s.AvailableReplicas, want, ts.MinAvailable, s.UpdatedReplicas)
		switch st.motion {
		case v1alpha1.ReasonScaling:
			st.detail = fmt.Sprintf("%s: scaling to %d, %d pods, %d available (minimum %d)", tier, want, s.Replicas, s.AvailableReplicas, ts.MinAvailable)
		case v1alpha1.ReasonRollingOut:
			st.detail = fmt.Sprintf("%s: rolling out %s, %d/%d updated, %d available (minimum %d)", tier, ts.Image, s.UpdatedReplicas, want, s.AvailableReplicas, ts.MinAvailable)
		}
	}
	st.status = ts
	return st
}

// creatingIfNew: a tier without a Deployment is being created unless
// it had run before (then its Deployment was deleted under it: not motion,
// trouble, and the reconcile recreates it).
func creatingIfNew(prev v1alpha1.TierStatus) string {
	if prev.SettledReplicas > 0 {
		return ""
	}
	return v1alpha1.ReasonCreating
}

// motionOf names what a tier's Deployment is doing: rolling (pods of an
// older template remain, or a template change not yet seen by the
// Deployment controller), scaling (its pod count differs from its replica
// count, or pods added by a scale-up are still starting), creating (its
// first pods starting), or nothing. Pods replaced after a crash are not
// motion: the spec did not move; the tier's availability tells of them.
func motionOf(d *appsv1.Deployment, want int32, prev v1alpha1.TierStatus, settled int32) string {
	s := d.Status
	if s.ObservedGeneration < d.Generation {
		switch {
		case settled == 0 && s.AvailableReplicas < want:
			return v1alpha1.ReasonCreating
		case prev.DesiredReplicas != want || s.Replicas != want:
			return v1alpha1.ReasonScaling
		default:
			return v1alpha1.ReasonRollingOut
		}
	}
	switch {
	case s.Replicas > s.UpdatedReplicas:
		return v1alpha1.ReasonRollingOut
	case s.AvailableReplicas >= want && s.Replicas == want:
		return ""
	case settled == 0:
		return v1alpha1.ReasonCreating
	case s.Replicas != want || want > settled:
		return v1alpha1.ReasonScaling
	}
	return ""
}

// minAvailable is the fewest available pods at which a tier of want
// replicas counts as serving: the PodDisruptionBudget's bound (the same
// one that limits voluntary disruptions: maxUnavailable 1 unless set),
// at least one pod, 0 for a tier scaled to 0 (what was asked for).
//
// The bound is computed over the smaller of want and settled (the count
// at which every pod was last available): a scale-up from 2 to 4 with
// maxUnavailable 1 keeps the minimum at 1 while the two new pods start,
// instead of raising it to 3 at once and reporting the two serving pods
// as not enough. Once the tier settles at 4 the minimum is 3.
func minAvailable(pdb v1alpha1.PDBSpec, want, settled int32) int32 {
	if want <= 0 {
		return 0
	}
	base := want
	if settled > 0 && settled < want {
		base = settled
	}
	m := int32(1)
	if pdb.Enabled == nil || *pdb.Enabled {
		if pdb.MinAvailable != nil {
			if v, err := intstr.GetScaledValueFromIntOrPercent(pdb.MinAvailable, int(base), true); err == nil {
				m = int32(v)
			}
		} else {
			mu := intstr.FromInt32(1)
			if pdb.MaxUnavailable != nil {
				mu = *pdb.MaxUnavailable
			}
			if v, err := intstr.GetScaledValueFromIntOrPercent(&mu, int(base), true); err == nil {
				m = base - int32(v)
			}
		}
	}
	return min(max(m, 1), base)
}
