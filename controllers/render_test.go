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
	"k8s.io/apimachinery/pkg/util/intstr"
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
		{"group size limit", func(c *v1alpha1.IMCluster) { c.Spec.Limits.MaxGroupMembers = 200 }, true, false, false},
		{"feed retention forever", func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = "0" }, true, false, false},
		{"feed retention, same duration", func(c *v1alpha1.IMCluster) { c.Spec.Limits.FeedRetention = "43200m" }, false, false, false},
		{"pipeline fetch wait", func(c *v1alpha1.IMCluster) { c.Spec.Message.PipelineFetchWait = "50ms" }, true, false, false},
		{"pipeline fetch wait, same duration", func(c *v1alpha1.IMCluster) { c.Spec.Message.PipelineFetchWait = "30ms" }, false, false, false},
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
	// dep: a Deployment of replicas with avail pods available; current:
	// its status observed its generation; updated: pods at its template.
	dep := func(replicas, avail int32, current bool) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
		d.Spec.Replicas = &replicas
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "x", Image: "img:2"}}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: avail, AvailableReplicas: avail}
		if !current {
			d.Status.ObservedGeneration = 1
		}
		return d
	}
	rolling := func(replicas, updated, avail int32) *appsv1.Deployment {
		d := dep(replicas, avail, true)
		d.Status.Replicas, d.Status.UpdatedReplicas = replicas+1, updated
		return d
	}
	settled := func(n int32) v1alpha1.TierStatus {
		return v1alpha1.TierStatus{DesiredReplicas: n, SettledReplicas: n, Image: "img:1"}
	}
	done := v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapSucceeded, SucceededHash: "h", Hash: "h"}
	newBoot := v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapRunning, SucceededHash: "h", Hash: "h2"}
	tiers := func(msg, push *appsv1.Deployment) map[string]*appsv1.Deployment {
		return map[string]*appsv1.Deployment{TierMessage: msg, TierPush: push}
	}
	tests := []struct {
		name                        string
		prev                        [2]v1alpha1.TierStatus // message, push
		obs                         observation
		ready, progressing, degrade metav1.ConditionStatus
		readyReason, progressReason string
	}{
		{"bootstrap running", [2]v1alpha1.TierStatus{}, observation{bootstrap: v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapRunning, Hash: "h"}, bootstrapHash: "h"},
			"False", "True", "False", v1alpha1.ReasonBootstrapPending, v1alpha1.ReasonBootstrapRunning},
		{"first bootstrap failed", [2]v1alpha1.TierStatus{}, observation{bootstrap: v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapFailed, Hash: "h", Message: "boom"}, bootstrapHash: "h"},
			"False", "False", "True", v1alpha1.ReasonBootstrapFailed, v1alpha1.ReasonBootstrapFailed},
		{"tiers starting", [2]v1alpha1.TierStatus{}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 0, true), nil)},
			"False", "True", "False", v1alpha1.ReasonCreating, v1alpha1.ReasonCreating},
		{"all ready", [2]v1alpha1.TierStatus{}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(3, 3, true))},
			"True", "False", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonStable},
		{"scale-up: new pods starting, Ready stays", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(6, 3, true))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonScaling},
		{"scale-up not yet seen by the Deployment controller", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(6, 3, false))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonScaling},
		{"scale-down", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(1, 3, false))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonScaling},
		{"template change not yet seen", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, false), dep(3, 3, true))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonRollingOut},
		{"rolling out, old pods serve", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(rolling(2, 1, 2), dep(3, 3, true))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonRollingOut},
		{"new configuration bootstrapping, Ready stays", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: newBoot, bootstrapHash: "h2", deployments: tiers(dep(2, 2, true), dep(3, 3, true))},
			"True", "True", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonBootstrapRunning},
		{"a later configuration's bootstrap failed: tiers still serve the previous one", [2]v1alpha1.TierStatus{settled(2), settled(3)},
			observation{bootstrap: v1alpha1.BootstrapStatus{Phase: v1alpha1.BootstrapFailed, SucceededHash: "h", Hash: "h2", Message: "boom"}, bootstrapHash: "h2", deployments: tiers(dep(2, 2, true), dep(3, 3, true))},
			"True", "False", "True", v1alpha1.ReasonAllReady, v1alpha1.ReasonBootstrapFailed},
		{"a pod lost within budget", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(3, 2, true))},
			"True", "False", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonStable},
		{"tier below its minimum", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), dep(3, 1, true))},
			"False", "False", "True", v1alpha1.ReasonTierUnavailable, v1alpha1.ReasonStable},
		{"zero replicas is ready", [2]v1alpha1.TierStatus{}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(0, 0, true), dep(0, 0, true))},
			"True", "False", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonStable},
		{"reconcile error, tiers serve", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", err: errors.New("Deployment x exists and is not controlled by IMCluster x"), deployments: tiers(dep(2, 2, true), dep(3, 3, true))},
			"True", "False", "True", v1alpha1.ReasonAllReady, v1alpha1.ReasonReconcileError},
		{"deployment deleted under a settled tier", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, bootstrapHash: "h", deployments: tiers(dep(2, 2, true), nil)},
			"False", "False", "True", v1alpha1.ReasonTierUnavailable, v1alpha1.ReasonStable},
		{"paused", [2]v1alpha1.TierStatus{settled(2), settled(3)}, observation{bootstrap: done, paused: true, deployments: tiers(dep(2, 2, true), dep(3, 3, false))},
			"True", "False", "False", v1alpha1.ReasonAllReady, v1alpha1.ReasonPaused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(nil)
			c.Generation = 7
			c.Status.Message, c.Status.Push = tc.prev[0], tc.prev[1]
			st := computeStatus(c, tc.obs)
			if st.ObservedGeneration != 7 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
			c.Status = st
			for typ, want := range map[string]metav1.ConditionStatus{
				v1alpha1.ConditionReady: tc.ready, v1alpha1.ConditionProgressing: tc.progressing, v1alpha1.ConditionDegraded: tc.degrade,
			} {
				cond := c.GetCondition(typ)
				if cond == nil || cond.Status != want || cond.ObservedGeneration != 7 {
					t.Errorf("%s = %+v, want %s", typ, cond, want)
				}
			}
			if r := c.GetCondition(v1alpha1.ConditionReady); r.Reason != tc.readyReason {
				t.Errorf("Ready reason %s (%s), want %s", r.Reason, r.Message, tc.readyReason)
			}
			if p := c.GetCondition(v1alpha1.ConditionProgressing); p.Reason != tc.progressReason {
				t.Errorf("Progressing reason %s (%s), want %s", p.Reason, p.Message, tc.progressReason)
			}
		})
	}
}

// The minimum of available pods at which a tier serves follows the PDB,
// is at least one pod (0 when scaled to 0), and during a scale-up is
// computed over the count the tier had settled at.
func TestMinAvailable(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	tests := []struct {
		name          string
		pdb           v1alpha1.PDBSpec
		want, settled int32
		minAvail      int32
	}{
		{"default maxUnavailable 1 of 3", v1alpha1.PDBSpec{}, 3, 3, 2},
		{"default of 1: still one pod", v1alpha1.PDBSpec{}, 1, 1, 1},
		{"scaled to zero", v1alpha1.PDBSpec{}, 0, 3, 0},
		{"scale-up 2 to 4 counts over 2", v1alpha1.PDBSpec{}, 4, 2, 1},
		{"scale-down 3 to 1", v1alpha1.PDBSpec{}, 1, 3, 1},
		{"never settled counts over want", v1alpha1.PDBSpec{}, 4, 0, 3},
		{"minAvailable 2", v1alpha1.PDBSpec{MinAvailable: num(2)}, 5, 5, 2},
		{"minAvailable above a settled base", v1alpha1.PDBSpec{MinAvailable: num(3)}, 4, 2, 2},
		{"minAvailable 50% rounds up", v1alpha1.PDBSpec{MinAvailable: pct("50%")}, 5, 5, 3},
		{"maxUnavailable 50% rounds up", v1alpha1.PDBSpec{MaxUnavailable: pct("50%")}, 5, 5, 2},
		{"maxUnavailable 100%: still one pod", v1alpha1.PDBSpec{MaxUnavailable: pct("100%")}, 3, 3, 1},
		{"PDB disabled: one pod", v1alpha1.PDBSpec{Enabled: ptr.To(false), MinAvailable: num(3)}, 5, 5, 1},
	}
	for _, tc := range tests {
		if got := minAvailable(tc.pdb, tc.want, tc.settled); got != tc.minAvail {
			t.Errorf("%s: minAvailable = %d, want %d", tc.name, got, tc.minAvail)
		}
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

// spec.message.pipelineFetchWait renders IM_PIPELINE_FETCH_WAIT within
// the bounds the message tier accepts; a value out of them (the CRD
// refuses it, but not every client goes through the apiserver's
// validation, e.g. a stale CRD) fails the render.
func TestPipelineFetchWaitRendering(t *testing.T) {
	tests := []struct {
		in, want string // want "": refused
	}{
		{"30ms", "30ms"},
		{"1ms", "1ms"},
		{"500ms", "500ms"},
		{"1s", ""},
		{"0ms", ""},
		{"999us", ""},
		{"-5ms", ""},
		{"soon", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := renderConfig(defaulted(func(c *v1alpha1.IMCluster) { c.Spec.Message.PipelineFetchWait = tc.in }))
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "pipelineFetchWait") {
					t.Fatalf("pipelineFetchWait %q: err = %v, want a refusal naming the field", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.shared[config.EnvFetchWait]; got != tc.want {
				t.Errorf("%s = %q, want %q", config.EnvFetchWait, got, tc.want)
			}
			if _, ok := r.bootstrapEnv[config.EnvFetchWait]; ok {
				t.Errorf("the bootstrap Job gets %s", config.EnvFetchWait)
			}
		})
	}
}
