package controllers

import (
	"errors"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
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
