package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// Tier names, also the app.kubernetes.io/component label of their objects.
const (
	TierMessage   = "message"
	TierPush      = "push"
	ComponentBoot = "bootstrap"
	ComponentConf = "config"
)

// Labels and annotations the operator sets.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelCluster   = "imcluster.io/cluster"
	LabelBootHash  = "imcluster.io/bootstrap-hash"

	ManagedBy = "imcluster-operator"

	// AnnotationSpecHash on a child: hash of what the operator wants it to be.
	AnnotationSpecHash = "imcluster.io/spec-hash"
	// AnnotationSpecAnnotations on the push Service: the annotation keys
	// that spec.push.service.annotations set.
	AnnotationSpecAnnotations = "imcluster.io/spec-annotations"
	// AnnotationConfigHash on a pod template: hash of the configuration
	// that tier reads; changing it rolls the tier.
	AnnotationConfigHash = "imcluster.io/config-hash"
)

// Fixed container-side settings.
const (
	metricsPort    = 9090
	mountRoot      = "/etc/imcluster"
	authDir        = mountRoot + "/auth"
	kafkaTLSDir    = mountRoot + "/kafka-tls"
	kafkaSASLDir   = mountRoot + "/kafka-sasl"
	cassandraDir   = mountRoot + "/cassandra"
	etcdTLSDir     = mountRoot + "/etcd-tls"
	listenerTLSDir = mountRoot + "/tls"        // the tier's own listener pair (spec.<tier>.tls)
	messageCADir   = mountRoot + "/message-ca" // push: ca.crt of spec.message.tls
	binary         = "/usr/local/bin/imcluster"
	preStopSeconds = 5 // endpoints controllers and proxies drop the pod first
	graceMargin    = 10
)

// Names of the children of an IMCluster.
func configMapName(c *v1alpha1.IMCluster) string         { return c.Name + "-config" }
func tierName(c *v1alpha1.IMCluster, tier string) string { return c.Name + "-" + tier }
func pushInternalName(c *v1alpha1.IMCluster) string      { return c.Name + "-push-internal" }
func bootstrapJobName(c *v1alpha1.IMCluster, hash string) string {
	return c.Name + "-bootstrap-" + hash[:10]
}

// commonLabels are on every child.
func commonLabels(c *v1alpha1.IMCluster, component string) map[string]string {
	return map[string]string{
		LabelName:      "imcluster",
		LabelInstance:  c.Name,
		LabelComponent: component,
		LabelManagedBy: ManagedBy,
		LabelCluster:   c.Name,
	}
}

// selectorLabels select a tier's pods; immutable once a Deployment exists.
func selectorLabels(c *v1alpha1.IMCluster, tier string) map[string]string {
	return map[string]string{
		LabelName:      "imcluster",
		LabelInstance:  c.Name,
		LabelComponent: tier,
	}
}

func objectMeta(c *v1alpha1.IMCluster, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: commonLabels(c, component)}
}

// rendered is the service configuration of one IMCluster.
type rendered struct {
	// shared is the ConfigMap content: what both tiers and the bootstrap
	// Job read, less per-pod and per-tier listener settings.
	shared map[string]string
	// messageHash and pushHash cover only the keys each tier reads.
	messageHash, pushHash string
	// bootstrapEnv is the Kafka and Cassandra part, which the bootstrap
	// Job acts on.
	bootstrapEnv map[string]string
	// secretHashes by tier: the hash of the Secrets the tier reads at
	// start ("" for none); set by the reconcile (secrets.go), not here.
	secretHashes map[string]string
}

// renderConfig turns a defaulted IMCluster into the services' configuration.
func renderConfig(c *v1alpha1.IMCluster) (rendered, error) {
	s := &c.Spec
	recall, err := time.ParseDuration(s.Limits.RecallWindow)
	if err != nil {
		return rendered{}, fmt.Errorf("while parsing spec.limits.recallWindow: %w", err)
	}
	retention, err := feedRetention(s.Limits.FeedRetention)
	if err != nil {
		return rendered{}, err
	}
	fetchWait, err := pipelineFetchWait(s.Message.PipelineFetchWait)
	if err != nil {
		return rendered{}, err
	}
	heartbeat, err := time.ParseDuration(s.Push.HeartbeatInterval)
	if err != nil {
		return rendered{}, fmt.Errorf("while parsing spec.push.heartbeatInterval: %w", err)
	}
	lease, err := time.ParseDuration(s.Push.PresenceLeaseTTL)
	if err != nil {
		return rendered{}, fmt.Errorf("while parsing spec.push.presenceLeaseTTL: %w", err)
	}
	prefix := s.Etcd.Prefix
	if prefix == "" {
		prefix = "/imcluster/" + c.Namespace + "/" + c.Name
	}
	common := config.Common{
		EtcdEndpoints:   s.Etcd.Endpoints,
		EtcdPrefix:      prefix,
		InternalKeyFile: authDir + "/internal",
	}
	if s.Etcd.TLS != nil {
		common.EtcdTLSDir = etcdTLSDir
	}
	msg := config.Message{
		Common: common,
		Kafka: config.Kafka{
			Brokers:           s.Kafka.Brokers,
			Topic:             s.Kafka.Topic,
			DLQTopic:          s.Kafka.Topic + ".dlq",
			Partitions:        s.Kafka.Partitions,
			ReplicationFactor: int16(s.Kafka.ReplicationFactor),
			Group:             s.Kafka.ConsumerGroup,
			FetchWait:         fetchWait,
		},
		Cassandra: config.Cassandra{
			Hosts:       s.Cassandra.ContactPoints,
			Keyspace:    s.Cassandra.Keyspace,
			LocalDC:     s.Cassandra.LocalDC,
			Replication: cassandraReplication(s.Cassandra.Replication),
		},
		UserKeyFile:     authDir + "/user",
		ServiceKeyFile:  authDir + "/service",
		MaxMessageBytes: int(s.Limits.MaxMessageBytes),
		RecallWindow:    recall,
		FeedRetention:   retention,
		// Groups: set by the API server's defaults (or the user).
		MaxGroupMembers:  int(s.Limits.MaxGroupMembers),
		MaxGroupsPerUser: int(s.Limits.MaxGroupsPerUser),
	}
	if s.Kafka.TLS != nil {
		msg.Kafka.TLSDir = kafkaTLSDir
	}
	if s.Kafka.SASL != nil {
		msg.SASLUserFile = kafkaSASLDir + "/username"
		msg.SASLPassFile = kafkaSASLDir + "/password"
	}
	if s.Cassandra.Credentials != nil {
		msg.Cassandra.UserFile = cassandraDir + "/username"
		msg.Cassandra.PassFile = cassandraDir + "/password"
	}
	push := config.Push{
		Common:            common,
		UserKeyFile:       authDir + "/user",
		MessageURL:        fmt.Sprintf("%s://%s.%s.svc:%d", messageScheme(c), tierName(c, TierMessage), c.Namespace, s.Message.Port),
		MaxConnections:    int(s.Push.MaxConnections),
		HeartbeatInterval: heartbeat,
		SendQueue:         int(s.Push.SendQueue),
		PresenceLeaseTTL:  lease,
	}
	msgEnv, pushEnv := msg.Env(), push.Env()
	wh, err := webhookConfig(c)
	if err != nil {
		return rendered{}, err
	}
	maps.Copy(msgEnv, wh.Env()) // read by the message tier only
	shared := maps.Clone(msgEnv)
	for k, v := range pushEnv {
		if old, ok := shared[k]; ok && old != v {
			return rendered{}, fmt.Errorf("while merging the tiers' configuration: %s differs (%q, %q)", k, old, v)
		}
		shared[k] = v
	}
	boot := map[string]string{}
	for k, v := range msgEnv {
		if strings.HasPrefix(k, "IM_KAFKA_") || strings.HasPrefix(k, "IM_CASSANDRA_") {
			boot[k] = v
		}
	}
	return rendered{
		shared:       shared,
		messageHash:  hashOf(msgEnv),
		pushHash:     hashOf(pushEnv),
		bootstrapEnv: boot,
	}, nil
}

// pipelineFetchWait turns spec.message.pipelineFetchWait into
// config.Kafka's FetchWait (the CRD refuses what this refuses; a spec
// that bypassed it is refused here rather than rendered into pods that
// would refuse to start).
func pipelineFetchWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("while parsing spec.message.pipelineFetchWait: %w", err)
	}
	if err := config.CheckFetchWait(d); err != nil {
		return 0, fmt.Errorf("spec.message.pipelineFetchWait %q %w", v, err)
	}
	return d, nil
}

// feedRetention turns spec.limits.feedRetention into config.Message's
// FeedRetention: "0" (any zero duration) is config.FeedRetentionForever,
// since a zero field would leave IM_FEED_RETENTION out and the service's
// 30-day default would apply.
func feedRetention(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("while parsing spec.limits.feedRetention: %w", err)
	case d < 0 || d%time.Second != 0 || d > config.MaxFeedRetention:
		return 0, fmt.Errorf("spec.limits.feedRetention %q: want whole seconds in [0, %v]", v, config.MaxFeedRetention)
	case d == 0:
		return config.FeedRetentionForever, nil
	}
	return d, nil
}

// messageScheme is how push pods call the message Service: https when the
// API serves TLS (spec.message.tls).
func messageScheme(c *v1alpha1.IMCluster) string {
	if c.Spec.Message.TLS != nil {
		return "https"
	}
	return "http"
}

// cassandraReplication renders the form config.Cassandra.Replication reads:
// "SimpleStrategy:3" or "NetworkTopologyStrategy:dc1=3,dc2=3".
func cassandraReplication(r v1alpha1.CassandraReplication) string {
	if r.Strategy != "NetworkTopologyStrategy" {
		return fmt.Sprintf("SimpleStrategy:%d", r.Factor)
	}
	dcs := slices.Sorted(maps.Keys(r.DataCenters))
	parts := make([]string, 0, len(dcs))
	for _, dc := range dcs {
		parts = append(parts, fmt.Sprintf("%s=%d", dc, r.DataCenters[dc]))
	}
	return "NetworkTopologyStrategy:" + strings.Join(parts, ",")
}

// hashOf is a short, stable hash of any JSON-serialisable value (map keys
// are sorted by encoding/json).
func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("hashOf: %v", err)) // only for types that always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

func renderConfigMap(c *v1alpha1.IMCluster, r rendered) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: objectMeta(c, configMapName(c), ComponentConf),
		Data:       r.shared,
	}
	setSpecHash(cm, cm.Data)
	return cm
}
