package controllers

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// Unit tests of the rendering and the status derivation: no apiserver.

func defaulted(mut func(*v1alpha1.IMCluster)) *v1alpha1.IMCluster {
	c := sampleCluster("ns", "x")
	if mut != nil {
		mut(c)
	}
	c.SetDefaults()
	return c
}

func TestConfigHashesPerTier(t *testing.T) {
	base, err := renderConfig(defaulted(nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		mut            func(*v1alpha1.IMCluster)
		msgChanges     bool
		pushChanges    bool
		bootstrapAgain bool
	}{
		{"nothing", func(*v1alpha1.IMCluster) {}, false, false, false},
		{"message limit", func(c *v1alpha1.IMCluster) { c.Spec.Limits.MaxMessageBytes = 100 }, true, false, false},
		{"feed retention", func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = "48h" }, true, false, false},
		{"feed retention forever", func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = "0" }, true, false, false},
		{"feed retention, same duration", func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = "43200m" }, false, false, false},
		{"push queue", func(c *v1alpha1.IMCluster) { c.Spec.Push.SendQueue = 8 }, false, true, false},
		{"push replicas", func(c *v1alpha1.IMCluster) { c.Spec.Push.Replicas = ptr.To[int32](9) }, false, false, false},
		{"etcd prefix", func(c *v1alpha1.IMCluster) { c.Spec.Etcd.Prefix = "/other" }, true, true, false},
		{"kafka brokers", func(c *v1alpha1.IMCluster) { c.Spec.Kafka.Brokers = []string{"b:9092"} }, true, false, true},
		{"cassandra replication", func(c *v1alpha1.IMCluster) {
			c.Spec.Cassandra.Replication = v1alpha1.CassandraReplication{Strategy: "NetworkTopologyStrategy", DataCenters: map[string]int32{"b": 3, "a": 2}}
		}, true, false, true},
		{"image", func(c *v1alpha1.IMCluster) { c.Spec.Image = "other:v2" }, false, false, true},
	}
	baseBoot := bootstrapHash(defaulted(nil), base)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(tc.mut)
			r, err := renderConfig(c)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.messageHash != base.messageHash; got != tc.msgChanges {
				t.Errorf("message hash changed = %v, want %v", got, tc.msgChanges)
			}
			if got := r.pushHash != base.pushHash; got != tc.pushChanges {
				t.Errorf("push hash changed = %v, want %v", got, tc.pushChanges)
			}
			if got := bootstrapHash(c, r) != baseBoot; got != tc.bootstrapAgain {
				t.Errorf("bootstrap hash changed = %v, want %v", got, tc.bootstrapAgain)
			}
		})
	}
}

// spec.limits.feedRetention renders IM_FEED_RETENTION for the message tier
// only; "0" renders "0" (keep forever), not nothing (which would be the
// service's 30-day default).
func TestFeedRetentionRendering(t *testing.T) {
	tests := []struct {
		in, want string // want "": refused
	}{
		{"", "720h0m0s"}, // SetDefaults
		{"0", "0"},
		{"0s", "0"},
		{"0h0m", "0"},
		{"1s", "1s"},
		{"36h", "36h0m0s"},
		{"175200h", "175200h0m0s"},
		{"175200h1s", ""},
		{"1.5s", ""},
		{"500ms", ""},
		{"-1h", ""},
		{"30d", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := renderConfig(defaulted(func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = tc.in }))
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "feedRetention") {
					t.Fatalf("err = %v, want a spec.limits.feedRetention error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.shared[config.EnvFeedRetention]; got != tc.want {
				t.Errorf("%s = %q, want %q", config.EnvFeedRetention, got, tc.want)
			}
			if _, ok := r.bootstrapEnv[config.EnvFeedRetention]; ok {
				t.Errorf("the bootstrap Job gets %s", config.EnvFeedRetention)
			}
		})
	}
}

func TestCassandraReplication(t *testing.T) {
	tests := []struct {
		in   v1alpha1.CassandraReplication
		want string
	}{
		{v1alpha1.CassandraReplication{Strategy: "SimpleStrategy", Factor: 1}, "SimpleStrategy:1"},
		{v1alpha1.CassandraReplication{Strategy: "NetworkTopologyStrategy", DataCenters: map[string]int32{"dc2": 3, "dc1": 2}}, "NetworkTopologyStrategy:dc1=2,dc2=3"},
	}
	for _, tc := range tests {
		if got := cassandraReplication(tc.in); got != tc.want {
			t.Errorf("%+v: got %q want %q", tc.in, got, tc.want)
		}
	}
}

func TestComputeStatus(t *testing.T) {
	dep := func(replicas, ready int32, current bool) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
		d.Spec.Replicas = &replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: ready, AvailableReplicas: ready}
		if !current {
			d.Status.ObservedGeneration = 1
		}
		return d
	}
	done := v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapSucceeded, SucceededHash: "h", Hash: "h"}
	tests := []struct {
		name                        string
		obs                         observation
		ready, progressing, degrade metav1.ConditionStatus
		readyReason                 string
	}{
		{"bootstrap running", observation{bootstrap: v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapRunning, Hash: "h"}, bootstrapHash: "h"},
			"False", "True", "False", v1alpha1.ReasonBootstrapPending},
		{"bootstrap failed", observation{bootstrap: v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapFailed, Hash: "h", Message: "boom"}, bootstrapHash: "h"},
			"False", "False", "True", v1alpha1.ReasonBootstrapFailed},
		{"all ready", observation{bootstrap: done, bootstrapHash: "h", deployments: map[string]*appsv1.Deployment{TierMessage: dep(2, 2, true), TierPush: dep(3, 3, true)}},
			"True", "False", "False", v1alpha1.ReasonAllReady},
		{"stale deployment status", observation{bootstrap: done, bootstrapHash: "h", deployments: map[string]*appsv1.Deployment{TierMessage: dep(2, 2, false), TierPush: dep(3, 3, true)}},
			"False", "True", "False", v1alpha1.ReasonRollingOut},
		{"pod not ready", observation{bootstrap: done, bootstrapHash: "h", deployments: map[string]*appsv1.Deployment{TierMessage: dep(2, 2, true), TierPush: dep(3, 2, true)}},
			"False", "True", "False", v1alpha1.ReasonRollingOut},
		{"zero replicas is ready", observation{bootstrap: done, bootstrapHash: "h", deployments: map[string]*appsv1.Deployment{TierMessage: dep(0, 0, true), TierPush: dep(0, 0, true)}},
			"True", "False", "False", v1alpha1.ReasonAllReady},
		{"reconcile error", observation{bootstrap: done, bootstrapHash: "h", err: errors.New("Deployment x exists and is not controlled by IMCluster x")},
			"False", "False", "True", v1alpha1.ReasonReconcileError},
		{"missing deployment", observation{bootstrap: done, bootstrapHash: "h", deployments: map[string]*appsv1.Deployment{TierMessage: dep(2, 2, true)}},
			"False", "True", "False", v1alpha1.ReasonRollingOut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(nil)
			c.Generation = 7
			st := computeStatus(c, tc.obs)
			if st.ObservedGeneration != 7 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
			for typ, want := range map[string]metav1.ConditionStatus{
				v1alpha1.ConditionReady: tc.ready, v1alpha1.ConditionProgressing: tc.progressing, v1alpha1.ConditionDegraded: tc.degrade,
			} {
				c.Status = st
				cond := c.GetCondition(typ)
				if cond == nil || cond.Status != want || cond.ObservedGeneration != 7 {
					t.Errorf("%s = %+v, want %s", typ, cond, want)
				}
			}
			if r := c.GetCondition(v1alpha1.ConditionReady); r.Reason != tc.readyReason {
				t.Errorf("Ready reason %s, want %s", r.Reason, tc.readyReason)
			}
		})
	}
}

func TestTransientErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("while creating: %w", apierrors.NewAlreadyExists(gr, "x")), true},
		{fmt.Errorf("while updating: %w", apierrors.NewConflict(gr, "x", errors.New("stale"))), true},
		{fmt.Errorf("while creating: %w", apierrors.NewForbidden(gr, "x", errors.New("rbac"))), false},
		{errors.New("not controlled by IMCluster"), false},
	}
	for _, tc := range tests {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Secret references become mounts at fixed paths and the *_FILE / *_DIR
// variables the services read; the message tier mounts Kafka and Cassandra
// credentials, the push tier does not, the bootstrap Job needs no auth keys.
func TestSecretReferencesRender(t *testing.T) {
	c := defaulted(func(c *v1alpha1.IMCluster) {
		c.Spec.Kafka.TLS = &v1alpha1.TLSSecretRef{SecretName: "kafka-tls"}
		c.Spec.Kafka.SASL = &v1alpha1.CredentialsSecretRef{SecretName: "kafka-user", UsernameKey: "u"}
		c.Spec.Cassandra.Credentials = &v1alpha1.CredentialsSecretRef{SecretName: "cql"}
		c.Spec.Etcd.TLS = &v1alpha1.TLSSecretRef{SecretName: "etcd-tls"}
	})
	r, err := renderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		config.EnvKafkaTLSDir:       kafkaTLSDir,
		config.EnvKafkaSASLUserFile: kafkaSASLDir + "/username",
		config.EnvKafkaSASLPassFile: kafkaSASLDir + "/password",
		config.EnvCassandraUserFile: cassandraDir + "/username",
		config.EnvCassandraPassFile: cassandraDir + "/password",
		config.EnvEtcdTLSDir:        etcdTLSDir,
	} {
		if r.shared[k] != want {
			t.Errorf("%s = %q, want %q", k, r.shared[k], want)
		}
	}
	mounts := func(spec corev1.PodSpec) map[string]string {
		byName := map[string]string{}
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				byName[v.Name] = v.Secret.SecretName
			}
		}
		out := map[string]string{}
		for _, m := range spec.Containers[0].VolumeMounts {
			if sec, ok := byName[m.Name]; ok {
				out[m.MountPath] = sec
			}
		}
		return out
	}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want map[string]string
	}{
		{"message", renderDeployment(c, r, TierMessage).Spec.Template.Spec, map[string]string{
			authDir: "imcluster-keys", kafkaTLSDir: "kafka-tls", kafkaSASLDir: "kafka-user", cassandraDir: "cql", etcdTLSDir: "etcd-tls"}},
		{"push", renderDeployment(c, r, TierPush).Spec.Template.Spec, map[string]string{authDir: "imcluster-keys", etcdTLSDir: "etcd-tls"}},
		{"bootstrap", renderBootstrapJob(c, bootstrapHash(c, r)).Spec.Template.Spec, map[string]string{
			kafkaTLSDir: "kafka-tls", kafkaSASLDir: "kafka-user", cassandraDir: "cql"}},
	}
	for _, tc := range tests {
		if got := mounts(tc.spec); !maps.Equal(got, tc.want) {
			t.Errorf("%s mounts %v, want %v", tc.name, got, tc.want)
		}
	}
	// The SASL username key is mapped to the fixed file name.
	for _, v := range renderDeployment(c, r, TierMessage).Spec.Template.Spec.Volumes {
		if v.Name == "kafka-sasl" && (v.Secret.Items[0].Key != "u" || v.Secret.Items[0].Path != "username") {
			t.Errorf("kafka-sasl items = %+v", v.Secret.Items)
		}
	}
	if _, err := config.LoadMessage(func(k string) string { return r.shared[k] }); err != nil {
		t.Errorf("services/config refuses the rendered configuration: %v", err)
	}
}
