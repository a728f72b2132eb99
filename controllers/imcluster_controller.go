package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// IMClusterReconciler reconciles IMCluster objects into their children.
type IMClusterReconciler struct {
	client.Client
	// APIReader reads the apiserver directly (mgr.GetAPIReader()): for a
	// child the label-filtered cache cannot show, and for the data of the
	// Secrets a tier reads at start (needed only when there are such).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  recorder.EventRecorder
}

// The operator's permissions, rendered by controller-gen into
// config/rbac/role.yaml (make manifests). Secrets: read only (never
// written): a metadata-only watch, and a get of the Secrets a tier reads at
// start, to hash their data into the tier's pod template (secrets.go).
//
// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters/status,verbs=get;patch
// +kubebuilder:rbac:groups=imcluster.io,resources=imclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one IMCluster's children to its spec and reports their
// state in its status.
func (r *IMClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cluster v1alpha1.IMCluster
	if err := r.Get(ctx, req.NamespacedName, &cluster); err != nil {
		if apierrors.IsNotFound(err) {
			forgetCluster(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !cluster.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // owner references garbage-collect the children
	}
	desired := cluster.DeepCopy()
	desired.SetDefaults()

	var obs observation
	if desired.IsPaused() {
		// Paused: change nothing, report what the children show.
		obs = observation{bootstrap: desired.Status.Bootstrap, paused: true}
	} else {
		obs = r.reconcileChildren(ctx, desired)
	}
	if !transient(obs.err) {
		// The status tells whether the tiers serve even when the
		// reconcile stopped before them (an error, the pause).
		if err := r.observeTiers(ctx, desired, &obs); err != nil && obs.err == nil {
			obs.err = err
		}
	}
	if transient(obs.err) {
		// A stale cache (a child just created, an object just changed):
		// not worth a Degraded condition; look again shortly.
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	status := computeStatus(desired, obs)
	recordConditions(cluster.Namespace, cluster.Name, status.Conditions)
	if err := r.patchStatus(ctx, &cluster, status); err != nil {
		if apierrors.IsConflict(err) {
			// The object changed under us; its new version is queued or
			// about to be. Look again shortly rather than log an error.
			return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
		}
		return ctrl.Result{}, errors.Join(obs.err, err)
	}
	return ctrl.Result{}, obs.err
}

// transient tells errors that a stale cache explains (optimistic-lock
// conflicts, creating what the cache did not show yet).
func transient(err error) bool {
	return err != nil && (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err))
}

// reconcileChildren creates, updates and deletes the children; it stops at
// the first error, which it returns in the observation.
func (r *IMClusterReconciler) reconcileChildren(ctx context.Context, c *v1alpha1.IMCluster) observation {
	obs := observation{deployments: map[string]*appsv1.Deployment{}, applied: map[string]bool{}, bootstrap: c.Status.Bootstrap}
	rd, err := renderConfig(c)
	if err != nil {
		obs.err = err
		return obs
	}
	cm := renderConfigMap(c, rd)
	if _, err := r.ensure(ctx, c, cm, nil, updateConfigMap(cm)); err != nil {
		obs.err = fmt.Errorf("while reconciling the configuration: %w", err)
		return obs
	}
	obs.bootstrap, obs.bootstrapHash, obs.err = r.reconcileBootstrap(ctx, c, rd)
	if obs.err != nil {
		return obs
	}
	if obs.err = r.reconcileNetworkAndPolicy(ctx, c); obs.err != nil {
		return obs
	}
	gate := obs.bootstrap.BootstrapDone(obs.bootstrapHash)
	rd.secretHashes = map[string]string{}
	read := secretsRead{}
	for _, tier := range []string{TierMessage, TierPush} {
		hash, problems, err := r.tierSecretHash(ctx, c, tier, read)
		if err != nil {
			obs.err = err
			return obs
		}
		obs.secretProblems = append(obs.secretProblems, problems...)
		rd.secretHashes[tier] = hash
		if !gate || len(problems) > 0 {
			// Until the current configuration is bootstrapped, or
			// while a Secret the tier reads at start is missing (its
			// new pods could not start), the tier is neither created
			// nor changed.
			if d, err := r.tierDeployment(ctx, c, tier); err == nil && d != nil {
				obs.deployments[tier] = d
			}
			continue
		}
		d, err := r.reconcileTier(ctx, c, rd, tier)
		if err != nil {
			obs.err = err
			return obs
		}
		obs.deployments[tier] = d
		obs.applied[tier] = true
	}
	return obs
}

// observeTiers reads, from the cache, the Deployments of the tiers the
// reconcile did not get to.
func (r *IMClusterReconciler) observeTiers(ctx context.Context, c *v1alpha1.IMCluster, obs *observation) error {
	if obs.deployments == nil {
		obs.deployments = map[string]*appsv1.Deployment{}
	}
	for _, tier := range []string{TierMessage, TierPush} {
		if obs.deployments[tier] != nil {
			continue
		}
		d, err := r.tierDeployment(ctx, c, tier)
		if err != nil {
			return err
		}
		obs.deployments[tier] = d
	}
	return nil
}

// reconcileNetworkAndPolicy handles the Services and PodDisruptionBudgets.
func (r *IMClusterReconciler) reconcileNetworkAndPolicy(ctx context.Context, c *v1alpha1.IMCluster) error {
	for _, svc := range []*corev1.Service{renderMessageService(c), renderPushService(c), renderPushInternalService(c)} {
		if _, err := r.ensure(ctx, c, svc, nil, updateService(svc)); err != nil {
			return fmt.Errorf("while reconciling Service %s: %w", svc.Name, err)
		}
	}
	for _, tier := range []string{TierMessage, TierPush} {
		if pdb := renderPDB(c, tier); pdb != nil {
			if _, err := r.ensure(ctx, c, pdb, nil, updatePDB(pdb)); err != nil {
				return fmt.Errorf("while reconciling the %s PodDisruptionBudget: %w", tier, err)
			}
			continue
		}
		stale := &policyv1.PodDisruptionBudget{}
		stale.Namespace, stale.Name = c.Namespace, tierName(c, tier)
		if err := r.deleteChild(ctx, c, stale); err != nil {
			return fmt.Errorf("while removing the %s PodDisruptionBudget: %w", tier, err)
		}
	}
	return nil
}

// Options tune the controller.
type Options struct {
	MaxConcurrentReconciles int
}

// pauseChanged passes an IMCluster update that sets or removes the pause
// annotation (no spec change, so no new generation, yet it must be acted
// on); other metadata changes are left out.
var pauseChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*v1alpha1.IMCluster)
		n, ok2 := e.ObjectNew.(*v1alpha1.IMCluster)
		return ok1 && ok2 && o.IsPaused() != n.IsPaused()
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// SetupWithManager registers the reconciler: it watches IMCluster spec
// changes (generation) and pause switches, every change of an owned child, and the Secrets
// (owned or not) that an IMCluster's tiers read at start.
func (r *IMClusterReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if opts.MaxConcurrentReconciles < 1 {
		opts.MaxConcurrentReconciles = 2
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.IMCluster{}, IndexSecretRefs, secretRefsIndex); err != nil {
		return fmt.Errorf("while indexing IMClusters by Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.IMCluster{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, pauseChanged))).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.Service{}).
		Owns(&appsv1.Deployment{}).
		Owns(&batchv1.Job{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		// Metadata only: an update of a Secret changes its
		// resourceVersion, which is all the watch needs to notice; the
		// reconcile reads the data of the referenced ones itself.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.clustersForSecret), builder.OnlyMetadata).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Named("imcluster").
		Complete(r)
}

// event records an event on the IMCluster; related is the child concerned,
// if any.
func (r *IMClusterReconciler) event(c *v1alpha1.IMCluster, related runtime.Object, eventType, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	if related != nil {
		if o, ok := related.(client.Object); !ok || o.GetName() == "" {
			related = nil
		}
	}
	r.Recorder.Eventf(c, related, eventType, reason, action, note, args...)
}

// CacheOptions restricts the manager's cache of child kinds to objects
// this operator manages, so its memory does not grow with every ConfigMap,
// Service or Deployment in the cluster.
//
// Secrets cannot be filtered so: they are the user's, and carry no label
// of ours (the operator does not write them). Their watch is metadata-only
// (SetupWithManager), so the cache holds no Secret data; the Transform also
// drops annotations (kubectl apply's last-applied-configuration annotation
// holds a Secret's data) and managed fields, leaving name, namespace,
// labels, resourceVersion and owners: a few hundred bytes per Secret of
// the cluster. The data of the few Secrets an IMCluster references is read
// from the apiserver at reconcile (APIReader), never cached.
func CacheOptions() cache.Options {
	sel := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:                         {Transform: stripSecretMetadata},
		&corev1.ConfigMap{}:                      sel,
		&corev1.Service{}:                        sel,
		&appsv1.Deployment{}:                     sel,
		&batchv1.Job{}:                           sel,
		&policyv1.PodDisruptionBudget{}:          sel,
		&autoscalingv2.HorizontalPodAutoscaler{}: sel,
	}}
}

// stripSecretMetadata keeps of a cached Secret (metadata-only, or typed
// should anyone read one through the cache) what the watch needs, and
// never its data.
func stripSecretMetadata(in any) (any, error) {
	switch o := in.(type) {
	case *metav1.PartialObjectMetadata:
		o.Annotations, o.ManagedFields = nil, nil
	case *corev1.Secret:
		o.Annotations, o.ManagedFields = nil, nil
		o.Data, o.StringData = nil, nil
	}
	return in, nil
}
