package v1alpha1

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// IMClusterSpec is the desired state of one imcluster installation: the two
// stateless tiers and the external systems they use.
type IMClusterSpec struct {
	// Image is the one image that carries every imcluster binary
	// (imcluster message|push|bootstrap).
	// +kubebuilder:validation:MinLength=1
	// +required
	Image string `json:"image"`

	// ImagePullPolicy of every container the operator creates.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets for the image registry.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Message is the message tier: HTTP API and the Kafka pipeline.
	// +kubebuilder:default={}
	// +optional
	Message MessageTierSpec `json:"message,omitempty"`

	// Push is the push tier: the WebSocket gateway. The scale subresource
	// (kubectl scale) sets push.replicas.
	// +kubebuilder:default={}
	// +optional
	Push PushTierSpec `json:"push,omitempty"`

	// Kafka is the reliable message log.
	// +required
	Kafka KafkaSpec `json:"kafka"`

	// Cassandra is the message store.
	// +required
	Cassandra CassandraSpec `json:"cassandra"`

	// Etcd holds the push-node registry and presence.
	// +required
	Etcd EtcdSpec `json:"etcd"`

	// Auth names the Secret holding the token signing keys: a key file per
	// token kind, each with one key or several (for rotation), reloaded by
	// the pods without a restart.
	// +required
	Auth AuthSpec `json:"auth"`

	// Limits bound what clients may send, and how long the sync feed keeps
	// it.
	// +kubebuilder:default={}
	// +optional
	Limits LimitsSpec `json:"limits,omitempty"`

	// Bootstrap tunes the Job that creates the Kafka topics and migrates the
	// Cassandra schema before the tiers start.
	// +kubebuilder:default={}
	// +optional
	Bootstrap BootstrapSpec `json:"bootstrap,omitempty"`

	// Webhooks to a business back end (before_send, after_send, ...);
	// unset: none (docs/webhooks.md).
	// +optional
	Webhooks *WebhooksSpec `json:"webhooks,omitempty"`
}

// TierSpec is what both tiers share: size, resources and placement.
// +kubebuilder:validation:XValidation:rule="!has(self.autoscaling) || !has(self.autoscaling.minReplicas) || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",message="autoscaling.minReplicas must not exceed autoscaling.maxReplicas"
type TierSpec struct {
	// Replicas is the number of pods. Ignored while autoscaling is set (the
	// HorizontalPodAutoscaler owns the count then).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=2
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Resources of the tier's container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Affinity of the tier's pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints of the tier's pods. When empty the operator
	// spreads pods across nodes (ScheduleAnyway).
	// +optional
	// +listType=atomic
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// NodeSelector of the tier's pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the tier's pods.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// PodAnnotations are added to the tier's pod template.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// PodDisruptionBudget of the tier.
	// +kubebuilder:default={}
	// +optional
	PodDisruptionBudget PDBSpec `json:"podDisruptionBudget,omitempty"`

	// Autoscaling, when set, creates a HorizontalPodAutoscaler for the tier.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`
}

// PDBSpec configures the tier's PodDisruptionBudget.
// +kubebuilder:validation:XValidation:rule="!(has(self.minAvailable) && has(self.maxUnavailable))",message="set at most one of minAvailable and maxUnavailable"
type PDBSpec struct {
	// Enabled creates the PodDisruptionBudget.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// MinAvailable pods during voluntary disruptions.
	// +optional
	MinAvailable *intstr.IntOrString `json:"minAvailable,omitempty"`

	// MaxUnavailable pods during voluntary disruptions; 1 when neither this
	// nor minAvailable is set.
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// AutoscalingSpec configures a HorizontalPodAutoscaler on CPU utilisation.
type AutoscalingSpec struct {
	// MinReplicas of the tier.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +kubebuilder:default=2
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// MaxReplicas of the tier.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetCPUUtilizationPercentage is the average CPU use (of requests)
	// the autoscaler aims at.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=70
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`

	// Behavior of the autoscaler (scale-up/down policies).
	// +optional
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

// MessageTierSpec configures the message tier.
type MessageTierSpec struct {
	TierSpec `json:",inline"`

	// Port of the HTTP API (container and Service).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=8080
	// +optional
	Port int32 `json:"port,omitempty"`

	// ShutdownGraceSeconds is how long a message pod may take to finish
	// in-flight requests and commit its offsets after SIGTERM.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=600
	// +kubebuilder:default=25
	// +optional
	ShutdownGraceSeconds int32 `json:"shutdownGraceSeconds,omitempty"`

	// PipelineFetchWait is how long the pipeline's fetch from the log may
	// wait for records to build up (IM_PIPELINE_FETCH_WAIT): a longer
	// wait makes fuller batches, which cost less CPU per message, for up
	// to this much more send→deliver latency. A backlog is fetched at once
	// whatever the wait. Milliseconds or seconds, 1ms to 500ms.
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^([0-9]+(ms|s))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('500ms')",message="message.pipelineFetchWait must be between 1ms and 500ms"
	// +kubebuilder:default="30ms"
	// +optional
	PipelineFetchWait string `json:"pipelineFetchWait,omitempty"`

	// TLS serves the HTTP API over https with this Secret (tls.crt,
	// tls.key; rotated in place when the Secret changes). It must also hold
	// ca.crt, which push pods trust for their calls to the message Service,
	// and its certificate must name <name>-message.<namespace>.svc. Unset:
	// plain http (terminate TLS in front). Health and metrics stay plain.
	// +optional
	TLS *TLSSecretRef `json:"tls,omitempty"`
}

// PushTierSpec configures the push tier.
type PushTierSpec struct {
	TierSpec `json:",inline"`

	// Service exposes the WebSocket port to clients.
	// +kubebuilder:default={}
	// +optional
	Service PushServiceSpec `json:"service,omitempty"`

	// Port of the WebSocket listener in the container.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=8081
	// +optional
	Port int32 `json:"port,omitempty"`

	// InternalPort is the delivery listener that message pods reach on each
	// push pod's own IP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=9091
	// +optional
	InternalPort int32 `json:"internalPort,omitempty"`

	// TLS serves the WebSocket listener as wss:// with this Secret (tls.crt,
	// tls.key; rotated in place when the Secret changes). Each TLS
	// connection costs a goroutine (about 17 KiB idle against about 1 KiB):
	// large fleets should terminate TLS at the load balancer instead.
	// Unset: plain ws. The internal delivery listener stays plain.
	// +optional
	TLS *TLSSecretRef `json:"tls,omitempty"`

	// DrainSeconds is how long a push pod may take, after SIGTERM, to hand its
	// connections back to the clients (which reconnect to other pods) and
	// drop its presence. The pod's grace period is sized from it.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +kubebuilder:default=30
	// +optional
	DrainSeconds int32 `json:"drainSeconds,omitempty"`

	// MaxConnections per push pod.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=50000
	// +optional
	MaxConnections int32 `json:"maxConnections,omitempty"`

	// HeartbeatInterval the clients are asked to keep.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:default="30s"
	// +optional
	HeartbeatInterval string `json:"heartbeatInterval,omitempty"`

	// SendQueue is the number of frames queued per connection before a slow
	// client is cut off.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65536
	// +kubebuilder:default=256
	// +optional
	SendQueue int32 `json:"sendQueue,omitempty"`

	// PresenceLeaseTTL is the etcd lease of a push pod's presence entries.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:default="10s"
	// +optional
	PresenceLeaseTTL string `json:"presenceLeaseTTL,omitempty"`
}

// PushServiceSpec is the client-facing Service of the push tier.
type PushServiceSpec struct {
	// Type of the Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Port of the Service.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=80
	// +optional
	Port int32 `json:"port,omitempty"`

	// NodePort, for type NodePort or LoadBalancer; chosen by Kubernetes when 0.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +optional
	NodePort int32 `json:"nodePort,omitempty"`

	// Annotations of the Service (load-balancer settings).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// KafkaSpec points at the Kafka cluster holding the message log.
type KafkaSpec struct {
	// Brokers are the bootstrap addresses, host:port.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	// +required
	Brokers []string `json:"brokers"`

	// Topic of the message log (its dead-letter topic is Topic + ".dlq").
	// Immutable: the log cannot move to another topic under running tiers.
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]{1,200}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="kafka.topic is immutable"
	// +kubebuilder:default="im.messages"
	// +optional
	Topic string `json:"topic,omitempty"`

	// Partitions of the topic. Immutable: the per-conversation sequence
	// derives from a conversation's partition.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="kafka.partitions is immutable"
	// +kubebuilder:default=12
	// +optional
	Partitions int32 `json:"partitions,omitempty"`

	// ReplicationFactor of the topics the bootstrap Job creates.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	// +kubebuilder:default=3
	// +optional
	ReplicationFactor int32 `json:"replicationFactor,omitempty"`

	// ConsumerGroup of the message pipeline.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:default="im-pipeline"
	// +optional
	ConsumerGroup string `json:"consumerGroup,omitempty"`

	// TLS, when set, names a Secret with ca.crt, tls.crt and tls.key.
	// +optional
	TLS *TLSSecretRef `json:"tls,omitempty"`

	// SASL, when set, names a Secret with the SASL username and password.
	// +optional
	SASL *CredentialsSecretRef `json:"sasl,omitempty"`
}

// CassandraSpec points at the Cassandra cluster holding messages.
type CassandraSpec struct {
	// ContactPoints are host:port addresses of CQL nodes.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	// +required
	ContactPoints []string `json:"contactPoints"`

	// Keyspace of imcluster's tables. Immutable.
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_]{0,47}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="cassandra.keyspace is immutable"
	// +kubebuilder:default="imcluster"
	// +optional
	Keyspace string `json:"keyspace,omitempty"`

	// LocalDC is the data centre the driver prefers.
	// +optional
	LocalDC string `json:"localDC,omitempty"`

	// Replication of the keyspace the bootstrap Job creates.
	// +kubebuilder:default={}
	// +optional
	Replication CassandraReplication `json:"replication,omitempty"`

	// Credentials, when set, names a Secret with the CQL username and password.
	// +optional
	Credentials *CredentialsSecretRef `json:"credentials,omitempty"`
}

// CassandraReplication is a keyspace replication strategy.
// +kubebuilder:validation:XValidation:rule="!has(self.strategy) || self.strategy != 'NetworkTopologyStrategy' || (has(self.dataCenters) && size(self.dataCenters) > 0)",message="NetworkTopologyStrategy needs dataCenters"
type CassandraReplication struct {
	// Strategy of the keyspace.
	// +kubebuilder:validation:Enum=SimpleStrategy;NetworkTopologyStrategy
	// +kubebuilder:default=SimpleStrategy
	// +optional
	Strategy string `json:"strategy,omitempty"`

	// Factor is the replication factor of SimpleStrategy.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	// +kubebuilder:default=3
	// +optional
	Factor int32 `json:"factor,omitempty"`

	// DataCenters maps a data centre to its replication factor, for
	// NetworkTopologyStrategy.
	// +optional
	DataCenters map[string]int32 `json:"dataCenters,omitempty"`
}

// EtcdSpec points at the etcd cluster holding presence.
type EtcdSpec struct {
	// Endpoints are the etcd client URLs or host:port addresses.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	// +required
	Endpoints []string `json:"endpoints"`

	// Prefix of every key; "/imcluster/<namespace>/<name>" when empty, so
	// several clusters can share one etcd.
	// +kubebuilder:validation:Pattern=`^/[^\s]*$`
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// TLS, when set, names a Secret with ca.crt, tls.crt and tls.key.
	// +optional
	TLS *TLSSecretRef `json:"tls,omitempty"`
}

// AuthSpec names the Secret with the HMAC keys of the three token kinds.
//
// Each of the three Secret keys holds a key file: one or more HMAC keys,
// one per line, "KID:SECRET" or a bare secret (at most 8 keys of at least
// 32 bytes; blank lines and lines starting with "#" ignored). The first key
// signs; every key verifies, picked by the token's kid. The pods re-read
// the files while running, so adding, promoting or dropping a key takes
// effect without a restart (and a change of this Secret rolls no pods):
// see docs/operator.md, "Signing keys and rotation".
type AuthSpec struct {
	// SecretName of a Secret in the IMCluster's namespace holding the three
	// key files. Its changes are reloaded in place: no pod restarts.
	// +kubebuilder:validation:MinLength=1
	// +required
	SecretName string `json:"secretName"`

	// UserKey is the Secret key holding the user-token key file: one key,
	// or several ("KID:SECRET" per line, at most 8, the first signs, every
	// one verifies) while a key is rotated.
	// +kubebuilder:default=user.key
	// +optional
	UserKey string `json:"userKey,omitempty"`

	// ServiceKey is the Secret key holding the service-token (SDK) key
	// file: one key, or several ("KID:SECRET" per line, at most 8, the
	// first signs, every one verifies) while a key is rotated.
	// +kubebuilder:default=service.key
	// +optional
	ServiceKey string `json:"serviceKey,omitempty"`

	// InternalKey is the Secret key holding the tier-to-tier key file: one
	// key, or several ("KID:SECRET" per line, at most 8; the first signs
	// the internal tokens, every one verifies) while a key is rotated.
	// +kubebuilder:default=internal.key
	// +optional
	InternalKey string `json:"internalKey,omitempty"`
}

// TLSSecretRef names a Secret of type kubernetes.io/tls plus ca.crt.
type TLSSecretRef struct {
	// SecretName in the IMCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +required
	SecretName string `json:"secretName"`
}

// CredentialsSecretRef names a Secret with a username and a password.
type CredentialsSecretRef struct {
	// SecretName in the IMCluster's namespace.
	// +kubebuilder:validation:MinLength=1
	// +required
	SecretName string `json:"secretName"`

	// UsernameKey is the Secret key holding the username.
	// +kubebuilder:default=username
	// +optional
	UsernameKey string `json:"usernameKey,omitempty"`

	// PasswordKey is the Secret key holding the password.
	// +kubebuilder:default=password
	// +optional
	PasswordKey string `json:"passwordKey,omitempty"`
}

// LimitsSpec bounds client input and how long the sync feed keeps it.
type LimitsSpec struct {
	// MaxMessageBytes is the largest message body accepted.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	// +kubebuilder:default=16384
	// +optional
	MaxMessageBytes int32 `json:"maxMessageBytes,omitempty"`

	// RecallWindow is how long after sending a message may be recalled.
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:default="2m"
	// +optional
	RecallWindow string `json:"recallWindow,omitempty"`

	// FeedRetention is how long the sync feed keeps each event
	// (IM_FEED_RETENTION): a device whose sync cursor is older gets
	// cursor_expired and resyncs (docs/protocol.md, section 5); history is
	// never trimmed. Whole seconds as a duration of h, m and s (no
	// fractions, no ms), at most 20 years (175200h, Cassandra's largest
	// TTL); "0" keeps the feed forever. A change applies to feed rows
	// written after it.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(0|([0-9]+(h|m|s))+)$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('175200h')",message="limits.feedRetention must be at most 175200h (20 years)"
	// +kubebuilder:default="720h"
	// +optional
	FeedRetention string `json:"feedRetention,omitempty"`

	// MaxGroupMembers bounds a group's size (IM_GROUP_MAX_MEMBERS). Every
	// member's feed gets a row per group message (write diffusion), so
	// this bounds one message's write cost (docs/benchmarks.md).
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:default=1000
	// +optional
	MaxGroupMembers int32 `json:"maxGroupMembers,omitempty"`

	// MaxGroupsPerUser bounds the groups one user may be created in or
	// added to (IM_GROUP_MAX_PER_USER).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +kubebuilder:default=500
	// +optional
	MaxGroupsPerUser int32 `json:"maxGroupsPerUser,omitempty"`
}

// BootstrapSpec tunes the bootstrap Job.
type BootstrapSpec struct {
	// BackoffLimit is the number of retries before the Job fails.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	// +kubebuilder:default=4
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`

	// ActiveDeadlineSeconds bounds the whole Job.
	// +kubebuilder:validation:Minimum=30
	// +kubebuilder:default=600
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`

	// Resources of the bootstrap container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// TierStatus is the observed state of one tier, read from its Deployment,
// so that a human or a dashboard need not open the Deployment.
type TierStatus struct {
	// DesiredReplicas is the tier's Deployment's replica count: the spec's,
	// or the HorizontalPodAutoscaler's choice while autoscaling is set.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`

	// Replicas is the number of pods the tier has (Deployment status).
	// +optional
	Replicas int32 `json:"replicas"`

	// ReadyReplicas is the number of ready pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// UpdatedReplicas is the number of pods at the current template.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`

	// AvailableReplicas is the number of available pods (ready, and
	// counted by the Deployment as serving).
	// +optional
	AvailableReplicas int32 `json:"availableReplicas"`

	// MinAvailable is the fewest available pods at which the tier counts
	// as serving (the Ready condition): the PodDisruptionBudget's bound
	// (maxUnavailable 1 unless set) over the replica count, at least one
	// pod, 0 for a tier scaled to 0. During a scale-up it is computed over
	// the count the tier had before (settledReplicas), so new pods still
	// starting do not count against it.
	// +optional
	MinAvailable int32 `json:"minAvailable"`

	// SettledReplicas is the replica count at which every pod of the tier
	// was last available; the base of minAvailable while a scale-up is
	// under way. 0 until the tier first settles.
	// +optional
	SettledReplicas int32 `json:"settledReplicas"`

	// Pods is readyReplicas/desiredReplicas, for the printer columns.
	// +optional
	Pods string `json:"pods,omitempty"`

	// Image of the tier's pod template (the image updatedReplicas run).
	// +optional
	Image string `json:"image,omitempty"`

	// ObservedGeneration is the IMCluster generation whose spec the tier's
	// Deployment was last brought to. It lags status.observedGeneration
	// while the bootstrap of a new configuration runs, while a Secret the
	// tier reads at start is missing, and while reconciliation is paused.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Selector is the label selector of the tier's pods, as a string (for
	// the scale subresource and HPA).
	// +optional
	Selector string `json:"selector,omitempty"`
}

// BootstrapPhase is the state of the bootstrap Job.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type BootstrapPhase string

// Bootstrap phases.
const (
	BootstrapPending   BootstrapPhase = "Pending"
	BootstrapRunning   BootstrapPhase = "Running"
	BootstrapSucceeded BootstrapPhase = "Succeeded"
	BootstrapFailed    BootstrapPhase = "Failed"
)

// BootstrapStatus is the state of the bootstrap (topics + schema) Job.
type BootstrapStatus struct {
	// Phase of the bootstrap for the current configuration.
	// +optional
	Phase BootstrapPhase `json:"phase,omitempty"`

	// JobName of the current bootstrap Job.
	// +optional
	JobName string `json:"jobName,omitempty"`

	// Hash of the configuration the current Job bootstraps.
	// +optional
	Hash string `json:"hash,omitempty"`

	// SucceededHash is the configuration hash that last bootstrapped
	// successfully; the tiers roll out only configurations bootstrapped so.
	// +optional
	SucceededHash string `json:"succeededHash,omitempty"`

	// Message explains a failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// IMClusterStatus is the observed state of an IMCluster.
type IMClusterStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (every tier can serve), Progressing (a bootstrap,
	// scale or rollout under way, or Paused), Degraded (needs a human).
	// See docs/operator.md, "Status".
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// Message is the message tier.
	// +optional
	Message TierStatus `json:"message,omitempty"`

	// Push is the push tier (the scale subresource reads its replicas and
	// selector).
	// +optional
	Push TierStatus `json:"push,omitempty"`

	// Bootstrap is the topics + schema Job.
	// +optional
	Bootstrap BootstrapStatus `json:"bootstrap,omitempty"`
}

// IMCluster runs the imcluster message and push tiers.
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=imc;imcs,categories=imcluster
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.push.replicas,statuspath=.status.push.replicas,selectorpath=.status.push.selector
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Progressing",type=string,JSONPath=`.status.conditions[?(@.type=="Progressing")].reason`,description="what is under way (Stable when nothing)"
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message.pods`,description="ready/desired message pods"
// +kubebuilder:printcolumn:name="Push",type=string,JSONPath=`.status.push.pods`,description="ready/desired push pods"
// +kubebuilder:printcolumn:name="Bootstrap",type=string,JSONPath=`.status.bootstrap.phase`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].reason`,priority=1,description="why Degraded (AsExpected when not)"
// +kubebuilder:printcolumn:name="Message-Image",type=string,JSONPath=`.status.message.image`,priority=1
// +kubebuilder:printcolumn:name="Push-Image",type=string,JSONPath=`.status.push.image`,priority=1
// +kubebuilder:printcolumn:name="Boot-Hash",type=string,JSONPath=`.status.bootstrap.succeededHash`,priority=1,description="configuration hash last bootstrapped"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name must be at most 40 characters (child names add suffixes)"
type IMCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IMClusterSpec   `json:"spec"`
	Status IMClusterStatus `json:"status,omitempty"`
}

// IMClusterList is a list of IMCluster.
// +kubebuilder:object:root=true
type IMClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IMCluster `json:"items"`
}
