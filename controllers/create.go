package controllers

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// setSpecHash records on obj the hash of what the operator wants it to be:
// its labels, its other annotations and content (spec or data).
func setSpecHash(obj client.Object, content any) {
	ann := maps.Clone(obj.GetAnnotations())
	delete(ann, AnnotationSpecHash)
	h := hashOf([]any{obj.GetLabels(), ann, content})
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationSpecHash] = h
	obj.SetAnnotations(ann)
}

func specHash(obj client.Object) string { return obj.GetAnnotations()[AnnotationSpecHash] }

// ensure makes the child desired exist: it creates it when missing, and
// when it exists but its spec hash differs from desired's (or inSync, when
// given, says a field outside the hash differs) it lets update copy the
// wanted fields onto the existing object and updates it, with the
// existing object's resourceVersion as optimistic lock. Nothing is written
// when the child is as wanted. update nil means the child is immutable
// (its name changes with its content). It returns the object as it now is.
func (r *IMClusterReconciler) ensure(
	ctx context.Context, owner *v1alpha1.IMCluster, desired client.Object,
	inSync func(existing client.Object) bool, update func(existing client.Object),
) (client.Object, error) {
	existing := desired.DeepCopyObject().(client.Object)
	if err := r.Get(ctx, client.ObjectKeyFromObject(desired), existing); apierrors.IsNotFound(err) {
		existing = nil
	} else if err != nil {
		return nil, fmt.Errorf("while reading %s %s: %w", r.kindOf(desired), desired.GetName(), err)
	}
	return r.ensureFrom(ctx, owner, desired, existing, inSync, update)
}

// ensureFrom is ensure for a caller that has already read the child:
// existing is the child as read (it is updated in place), nil when the
// read found none.
func (r *IMClusterReconciler) ensureFrom(
	ctx context.Context, owner *v1alpha1.IMCluster, desired, existing client.Object,
	inSync func(existing client.Object) bool, update func(existing client.Object),
) (client.Object, error) {
	kind := r.kindOf(desired)
	if existing == nil {
		existing = desired.DeepCopyObject().(client.Object)
		created, err := r.create(ctx, owner, kind, desired)
		if err == nil || !apierrors.IsAlreadyExists(err) || r.APIReader == nil {
			return created, err
		}
		// The cache does not show it: it lacks the managed-by label (the
		// cache holds only labelled objects), or the cache lags. Look at
		// the apiserver itself.
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), existing); err != nil {
			return nil, fmt.Errorf("while reading %s %s: %w", kind, desired.GetName(), err)
		}
	}
	if !metav1.IsControlledBy(existing, owner) {
		return nil, fmt.Errorf("%s %s exists and is not controlled by IMCluster %s", kind, existing.GetName(), owner.Name)
	}
	if specHash(existing) == specHash(desired) && hasLabels(existing, desired.GetLabels()) && (inSync == nil || inSync(existing)) {
		return existing, nil
	}
	if update == nil {
		return existing, nil
	}
	dropUnwantedAnnotations(existing, desired)
	labels := existing.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, desired.GetLabels())
	existing.SetLabels(labels)
	ann := existing.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, desired.GetAnnotations())
	existing.SetAnnotations(ann)
	update(existing)
	if err := r.Update(ctx, existing); err != nil {
		return nil, fmt.Errorf("while updating %s %s: %w", kind, existing.GetName(), err)
	}
	childWrites.WithLabelValues(kind, "update").Inc()
	r.event(owner, existing, corev1.EventTypeNormal, "Updated", "Update", "Updated %s %s", kind, existing.GetName())
	return existing, nil
}

// dropUnwantedAnnotations removes from existing the annotations that an
// earlier spec set (listed in AnnotationSpecAnnotations) and the current
// one no longer does.
func dropUnwantedAnnotations(existing, desired client.Object) {
	ann := existing.GetAnnotations()
	before, ok := ann[AnnotationSpecAnnotations]
	if !ok || before == "" {
		return
	}
	want := desired.GetAnnotations()
	for _, k := range strings.Split(before, ",") {
		if _, keep := want[k]; !keep {
			delete(ann, k)
		}
	}
	existing.SetAnnotations(ann)
}

func (r *IMClusterReconciler) create(ctx context.Context, owner *v1alpha1.IMCluster, kind string, desired client.Object) (client.Object, error) {
	if err := controllerutil.SetControllerReference(owner, desired, r.Scheme); err != nil {
		return nil, fmt.Errorf("while setting the owner of %s %s: %w", kind, desired.GetName(), err)
	}
	if err := r.Create(ctx, desired); err != nil {
		return nil, fmt.Errorf("while creating %s %s: %w", kind, desired.GetName(), err)
	}
	childWrites.WithLabelValues(kind, "create").Inc()
	r.event(owner, desired, corev1.EventTypeNormal, "Created", "Create", "Created %s %s", kind, desired.GetName())
	return desired, nil
}

// hasLabels tells whether obj carries every label of want (a child whose
// managed-by label was removed drops out of the cache; it is put back).
func hasLabels(obj client.Object, want map[string]string) bool {
	got := obj.GetLabels()
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// deleteChild deletes the child obj (only its Namespace and Name are
// read) if it exists and is controlled by owner.
func (r *IMClusterReconciler) deleteChild(ctx context.Context, owner *v1alpha1.IMCluster, obj client.Object) error {
	kind := r.kindOf(obj)
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("while reading %s %s: %w", kind, obj.GetName(), err)
	}
	if !metav1.IsControlledBy(obj, owner) {
		return nil
	}
	if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("while deleting %s %s: %w", kind, obj.GetName(), err)
	}
	childWrites.WithLabelValues(kind, "delete").Inc()
	r.event(owner, obj, corev1.EventTypeNormal, "Deleted", "Delete", "Deleted %s %s", kind, obj.GetName())
	return nil
}

func (r *IMClusterReconciler) kindOf(obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, r.Scheme)
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return gvk.Kind
}

// Update functions: copy the fields the operator owns from desired onto
// an existing child, keeping what the apiserver or other controllers own.

func updateConfigMap(desired *corev1.ConfigMap) func(client.Object) {
	return func(o client.Object) { o.(*corev1.ConfigMap).Data = desired.Data }
}

func updateDeployment(desired *appsv1.Deployment) func(client.Object) {
	return func(o client.Object) {
		e := o.(*appsv1.Deployment)
		e.Spec.Replicas = desired.Spec.Replicas
		e.Spec.Template = desired.Spec.Template
		e.Spec.Strategy = desired.Spec.Strategy
		e.Spec.RevisionHistoryLimit = desired.Spec.RevisionHistoryLimit
		e.Spec.ProgressDeadlineSeconds = desired.Spec.ProgressDeadlineSeconds
	}
}

// updateService keeps the allocated cluster IPs and, where the spec asks
// for none in particular, the allocated node ports.
func updateService(desired *corev1.Service) func(client.Object) {
	return func(o client.Object) {
		e := o.(*corev1.Service)
		allocated := map[string]int32{}
		for _, p := range e.Spec.Ports {
			allocated[p.Name] = p.NodePort
		}
		ports := append([]corev1.ServicePort(nil), desired.Spec.Ports...)
		if desired.Spec.Type != corev1.ServiceTypeClusterIP {
			for i := range ports {
				if ports[i].NodePort == 0 {
					ports[i].NodePort = allocated[ports[i].Name]
				}
			}
		}
		e.Spec.Type = desired.Spec.Type
		e.Spec.Ports = ports
		e.Spec.Selector = desired.Spec.Selector
		e.Spec.PublishNotReadyAddresses = desired.Spec.PublishNotReadyAddresses
	}
}

func updatePDB(desired *policyv1.PodDisruptionBudget) func(client.Object) {
	return func(o client.Object) { o.(*policyv1.PodDisruptionBudget).Spec = desired.Spec }
}

func updateHPA(desired *autoscalingv2.HorizontalPodAutoscaler) func(client.Object) {
	return func(o client.Object) { o.(*autoscalingv2.HorizontalPodAutoscaler).Spec = desired.Spec }
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
