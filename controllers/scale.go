package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// desiredReplicas is the replica count a tier's Deployment should have.
// Without autoscaling it is spec.<tier>.replicas (which `kubectl scale`
// sets for the push tier). With autoscaling the HorizontalPodAutoscaler owns
// the count: an existing Deployment keeps its own, a new one starts at
// spec.<tier>.replicas brought within [minReplicas, maxReplicas].
func desiredReplicas(c *v1alpha1.IMCluster, tier string, existing *appsv1.Deployment) int32 {
	spec := tierSpec(c, tier)
	want := *spec.Replicas
	a := spec.Autoscaling
	if a == nil {
		return want
	}
	if existing != nil && existing.Spec.Replicas != nil {
		return *existing.Spec.Replicas
	}
	return min(max(want, a.MinReplicas), a.MaxReplicas)
}

// reconcileTier makes a tier's Deployment and HPA follow the spec, and
// returns the Deployment as it now is.
func (r *IMClusterReconciler) reconcileTier(ctx context.Context, c *v1alpha1.IMCluster, rd rendered, tier string) (*appsv1.Deployment, error) {
	current, err := r.tierDeployment(ctx, c, tier)
	if err != nil {
		return nil, err
	}
	desired := renderDeployment(c, rd, tier)
	replicas := desiredReplicas(c, tier, current)
	desired.Spec.Replicas = &replicas
	inSync := func(o client.Object) bool {
		d := o.(*appsv1.Deployment)
		return d.Spec.Replicas != nil && *d.Spec.Replicas == replicas
	}
	var existing client.Object // read once above: no second read in ensure
	if current != nil {
		existing = current
	}
	obj, err := r.ensureFrom(ctx, c, desired, existing, inSync, updateDeployment(desired))
	if err != nil {
		return nil, fmt.Errorf("while reconciling the %s tier: %w", tier, err)
	}
	if hpa := renderHPA(c, tier); hpa != nil {
		if _, err := r.ensure(ctx, c, hpa, nil, updateHPA(hpa)); err != nil {
			return nil, fmt.Errorf("while reconciling the %s autoscaler: %w", tier, err)
		}
	} else {
		stale := &autoscalingv2.HorizontalPodAutoscaler{}
		stale.Namespace, stale.Name = c.Namespace, tierName(c, tier)
		if err := r.deleteChild(ctx, c, stale); err != nil {
			return nil, fmt.Errorf("while removing the %s autoscaler: %w", tier, err)
		}
	}
	return obj.(*appsv1.Deployment), nil
}

// tierDeployment reads a tier's Deployment; nil when it does not exist.
func (r *IMClusterReconciler) tierDeployment(ctx context.Context, c *v1alpha1.IMCluster, tier string) (*appsv1.Deployment, error) {
	var d appsv1.Deployment
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: tierName(c, tier)}, &d)
	switch {
	case err == nil:
		return &d, nil
	case client.IgnoreNotFound(err) != nil:
		return nil, fmt.Errorf("while reading the %s Deployment: %w", tier, err)
	}
	return nil, nil
}
