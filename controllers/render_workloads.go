package controllers

import (
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

func tierSpec(c *v1alpha1.IMCluster, tier string) *v1alpha1.TierSpec {
	if tier == TierMessage {
		return &c.Spec.Message.TierSpec
	}
	return &c.Spec.Push.TierSpec
}

func tierConfigHash(c *v1alpha1.IMCluster, r rendered, tier string) string {
	if tier == TierMessage {
		return r.messageHash
	}
	return r.pushHash
}

// renderDeployment renders a tier's Deployment. Its replica count is left
// out of the spec hash: scale.go decides it (spec, or the HPA's choice).
func renderDeployment(c *v1alpha1.IMCluster, r rendered, tier string) *appsv1.Deployment {
	spec := tierSpec(c, tier)
	d := &appsv1.Deployment{
		ObjectMeta: objectMeta(c, tierName(c, tier), tier),
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels(c, tier)},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)),
					MaxSurge:       ptr.To(intstr.FromString("25%")),
				},
			},
			RevisionHistoryLimit:    ptr.To[int32](5),
			ProgressDeadlineSeconds: ptr.To[int32](600),
			Template:                tierPodTemplate(c, tier, spec, tierConfigHash(c, r, tier)),
		},
	}
	if h := r.secretHashes[tier]; h != "" {
		d.Spec.Template.Annotations[AnnotationSecretHash] = h
	}
	setSpecHash(d, d.Spec)
	return d
}

func renderMessageService(c *v1alpha1.IMCluster) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: objectMeta(c, tierName(c, TierMessage), TierMessage),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selectorLabels(c, TierMessage),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: c.Spec.Message.Port, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: metricsPort, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	setSpecHash(s, s.Spec)
	return s
}

func renderPushService(c *v1alpha1.IMCluster) *corev1.Service {
	p := &c.Spec.Push
	port := corev1.ServicePort{Name: "ws", Port: p.Service.Port, TargetPort: intstr.FromString("ws"), Protocol: corev1.ProtocolTCP}
	if p.Service.Type != corev1.ServiceTypeClusterIP {
		port.NodePort = p.Service.NodePort
	}
	s := &corev1.Service{
		ObjectMeta: objectMeta(c, tierName(c, TierPush), TierPush),
		Spec: corev1.ServiceSpec{
			Type:     p.Service.Type,
			Selector: selectorLabels(c, TierPush),
			Ports:    []corev1.ServicePort{port},
		},
	}
	s.Annotations = maps.Clone(p.Service.Annotations)
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	// Remember which annotations come from the spec, so that one removed
	// from the spec is removed from the Service (and others' are kept).
	s.Annotations[AnnotationSpecAnnotations] = strings.Join(sortedKeys(p.Service.Annotations), ",")
	setSpecHash(s, s.Spec)
	return s
}

// renderPushInternalService is headless: message pods address push pods
// individually (IM_ADVERTISE_URL from the pod IP); this Service lists them
// for scraping and debugging, including not-yet-ready ones.
func renderPushInternalService(c *v1alpha1.IMCluster) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: objectMeta(c, pushInternalName(c), TierPush),
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeClusterIP,
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 selectorLabels(c, TierPush),
			Ports: []corev1.ServicePort{
				{Name: "internal", Port: c.Spec.Push.InternalPort, TargetPort: intstr.FromString("internal"), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: metricsPort, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	setSpecHash(s, s.Spec)
	return s
}

// renderPDB renders a tier's PodDisruptionBudget, or nil when disabled.
func renderPDB(c *v1alpha1.IMCluster, tier string) *policyv1.PodDisruptionBudget {
	spec := tierSpec(c, tier)
	if spec.PodDisruptionBudget.Enabled != nil && !*spec.PodDisruptionBudget.Enabled {
		return nil
	}
	p := &policyv1.PodDisruptionBudget{
		ObjectMeta: objectMeta(c, tierName(c, tier), tier),
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: selectorLabels(c, tier)},
			MinAvailable:   spec.PodDisruptionBudget.MinAvailable,
			MaxUnavailable: spec.PodDisruptionBudget.MaxUnavailable,
		},
	}
	if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
		p.Spec.MaxUnavailable = ptr.To(intstr.FromInt32(1))
	}
	setSpecHash(p, p.Spec)
	return p
}

// renderHPA renders a tier's HorizontalPodAutoscaler, or nil when the tier
// is not autoscaled.
func renderHPA(c *v1alpha1.IMCluster, tier string) *autoscalingv2.HorizontalPodAutoscaler {
	a := tierSpec(c, tier).Autoscaling
	if a == nil {
		return nil
	}
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: objectMeta(c, tierName(c, tier), tier),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				APIVersion: "apps/v1", Kind: "Deployment", Name: tierName(c, tier),
			},
			MinReplicas: ptr.To(a.MinReplicas),
			MaxReplicas: a.MaxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{
						Type:               autoscalingv2.UtilizationMetricType,
						AverageUtilization: ptr.To(a.TargetCPUUtilizationPercentage),
					},
				},
			}},
			Behavior: a.Behavior,
		},
	}
	setSpecHash(h, h.Spec)
	return h
}

// bootstrapHash covers what the bootstrap Job acts on: its pod template
// (image, Secrets, resources) and the Kafka and Cassandra configuration.
func bootstrapHash(c *v1alpha1.IMCluster, r rendered) string {
	return hashOf([]any{bootstrapPodTemplate(c), r.bootstrapEnv})
}

// renderBootstrapJob renders the Job for configuration hash.
func renderBootstrapJob(c *v1alpha1.IMCluster, hash string) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: objectMeta(c, bootstrapJobName(c, hash), ComponentBoot),
		Spec: batchv1.JobSpec{
			BackoffLimit:          c.Spec.Bootstrap.BackoffLimit,
			ActiveDeadlineSeconds: c.Spec.Bootstrap.ActiveDeadlineSeconds,
			Template:              bootstrapPodTemplate(c),
		},
	}
	j.Labels[LabelBootHash] = hash
	setSpecHash(j, j.Spec)
	return j
}
