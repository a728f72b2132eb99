package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
)

// Defaults, the same as the +kubebuilder:default markers.
const (
	DefaultReplicas           int32 = 2
	DefaultMessagePort        int32 = 8080
	DefaultPushPort           int32 = 8081
	DefaultPushInternalPort   int32 = 9091
	DefaultPushServicePort    int32 = 80
	DefaultMessageGrace       int32 = 25
	DefaultDrainSeconds       int32 = 30
	DefaultMaxConnections     int32 = 50000
	DefaultHeartbeat                = "30s"
	DefaultSendQueue          int32 = 256
	DefaultPresenceLeaseTTL         = "10s"
	DefaultTopic                    = "im.messages"
	DefaultPartitions         int32 = 12
	DefaultKafkaReplication   int32 = 3
	DefaultConsumerGroup            = "im-pipeline"
	DefaultKeyspace                 = "imcluster"
	DefaultCassandraStrategy        = "SimpleStrategy"
	DefaultCassandraFactor    int32 = 3
	DefaultMaxMessageBytes    int32 = 16384
	DefaultPipelineFetchWait        = "30ms" // services/config.DefaultFetchWait
	DefaultRecallWindow             = "2m"
	DefaultFeedRetention            = "720h" // 30 days, services/config.DefaultFeedRetention
	DefaultMaxGroupMembers    int32 = 1000   // services/config.DefaultGroupMaxMembers
	DefaultMaxGroupsPerUser   int32 = 500    // services/config.DefaultGroupMaxPerUser
	DefaultBackoffLimit       int32 = 4
	DefaultActiveDeadline     int64 = 600
	DefaultTargetCPU          int32 = 70
	DefaultUserKey                  = "user.key"
	DefaultServiceKey               = "service.key"
	DefaultInternalKey              = "internal.key"
	DefaultUsernameKey              = "username"
	DefaultPasswordKey              = "password"
	DefaultAutoscalingMinimum int32 = 2
)

// SetDefaults fills every unset field with the value the apiserver's
// structural defaulting would give it. The reconciler calls it on a copy, so
// objects created before a default was added behave like new ones.
func (c *IMCluster) SetDefaults() {
	s := &c.Spec
	if s.ImagePullPolicy == "" {
		s.ImagePullPolicy = corev1.PullIfNotPresent
	}
	s.Message.TierSpec.setDefaults()
	s.Push.TierSpec.setDefaults()
	setInt32(&s.Message.Port, DefaultMessagePort)
	setInt32(&s.Message.ShutdownGraceSeconds, DefaultMessageGrace)
	setString(&s.Message.PipelineFetchWait, DefaultPipelineFetchWait)

	p := &s.Push
	if p.Service.Type == "" {
		p.Service.Type = corev1.ServiceTypeClusterIP
	}
	setInt32(&p.Service.Port, DefaultPushServicePort)
	setInt32(&p.Port, DefaultPushPort)
	setInt32(&p.InternalPort, DefaultPushInternalPort)
	setInt32(&p.DrainSeconds, DefaultDrainSeconds)
	setInt32(&p.MaxConnections, DefaultMaxConnections)
	setString(&p.HeartbeatInterval, DefaultHeartbeat)
	setInt32(&p.SendQueue, DefaultSendQueue)
	setString(&p.PresenceLeaseTTL, DefaultPresenceLeaseTTL)

	k := &s.Kafka
	setString(&k.Topic, DefaultTopic)
	setInt32(&k.Partitions, DefaultPartitions)
	setInt32(&k.ReplicationFactor, DefaultKafkaReplication)
	setString(&k.ConsumerGroup, DefaultConsumerGroup)
	k.SASL.setDefaults()

	cs := &s.Cassandra
	setString(&cs.Keyspace, DefaultKeyspace)
	setString(&cs.Replication.Strategy, DefaultCassandraStrategy)
	setInt32(&cs.Replication.Factor, DefaultCassandraFactor)
	cs.Credentials.setDefaults()

	a := &s.Auth
	setString(&a.UserKey, DefaultUserKey)
	setString(&a.ServiceKey, DefaultServiceKey)
	setString(&a.InternalKey, DefaultInternalKey)

	setInt32(&s.Limits.MaxMessageBytes, DefaultMaxMessageBytes)
	setString(&s.Limits.RecallWindow, DefaultRecallWindow)
	setString(&s.Limits.FeedRetention, DefaultFeedRetention)
	setInt32(&s.Limits.MaxGroupMembers, DefaultMaxGroupMembers)
	setInt32(&s.Limits.MaxGroupsPerUser, DefaultMaxGroupsPerUser)

	s.Webhooks.setDefaults()

	if s.Bootstrap.BackoffLimit == nil {
		v := DefaultBackoffLimit
		s.Bootstrap.BackoffLimit = &v
	}
	if s.Bootstrap.ActiveDeadlineSeconds == nil {
		v := DefaultActiveDeadline
		s.Bootstrap.ActiveDeadlineSeconds = &v
	}
}

func (t *TierSpec) setDefaults() {
	if t.Replicas == nil {
		v := DefaultReplicas
		t.Replicas = &v
	}
	if t.PodDisruptionBudget.Enabled == nil {
		v := true
		t.PodDisruptionBudget.Enabled = &v
	}
	if a := t.Autoscaling; a != nil {
		setInt32(&a.MinReplicas, DefaultAutoscalingMinimum)
		setInt32(&a.TargetCPUUtilizationPercentage, DefaultTargetCPU)
	}
}

func (r *CredentialsSecretRef) setDefaults() {
	if r == nil {
		return
	}
	setString(&r.UsernameKey, DefaultUsernameKey)
	setString(&r.PasswordKey, DefaultPasswordKey)
}

func setInt32(p *int32, v int32) {
	if *p == 0 {
		*p = v
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}
