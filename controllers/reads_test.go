package controllers

import (
	"context"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingClient counts the Deployment reads made through it.
type countingClient struct {
	client.Client
	mu    sync.Mutex
	reads map[client.ObjectKey]int
}

func (c *countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*appsv1.Deployment); ok {
		c.mu.Lock()
		c.reads[key]++
		c.mu.Unlock()
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// A reconcile reads each tier's Deployment once, whether it then changes
// it or not.
func TestReconcileReadsEachDeploymentOnce(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "reads")
	// The suite's manager leaves this cluster alone: had it reconciled the
	// spec change below too, the measured reconcile could have stopped at
	// a conflict on the message Deployment, before reading the push one.
	// The test reconciles it itself.
	c.Labels = map[string]string{labelUnmanaged: "true"}
	if err := s.Client.Create(context.Background(), c); err != nil {
		t.Fatalf("create IMCluster: %v", err)
	}
	reconcile := func(t *testing.T, cl client.Client) {
		t.Helper()
		r := &IMClusterReconciler{Client: cl, Scheme: testScheme}
		res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "reads"}})
		if err != nil || !res.IsZero() {
			t.Fatalf("Reconcile: %v (result %+v)", err, res)
		}
	}
	reconcile(t, s.Client) // configuration, Services, bootstrap Job
	s.finishJob(t, s.bootstrapJob(t, ns, "reads"), true)
	reconcile(t, s.Client) // the Deployments
	s.deployment(t, c, TierMessage)
	s.deployment(t, c, TierPush)

	tests := []struct {
		name        string
		patch       string // applied before the reconcile; "" for none
		msgReplicas int32  // after it
	}{
		{"nothing changed", "", 2},
		{"message tier scaled", `{"spec":{"message":{"replicas":3}}}`, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.patch != "" {
				patchSpec(t, s, ns, "reads", tc.patch)
			}
			cc := &countingClient{Client: s.Client, reads: map[client.ObjectKey]int{}}
			reconcile(t, cc)
			for _, tier := range []string{TierMessage, TierPush} {
				key := client.ObjectKey{Namespace: ns, Name: tierName(c, tier)}
				if n := cc.reads[key]; n != 1 {
					t.Errorf("%s Deployment read %d times in one reconcile, want 1", tier, n)
				}
			}
			if d := s.deployment(t, c, TierMessage); ptr.Deref(d.Spec.Replicas, 0) != tc.msgReplicas {
				t.Errorf("message replicas %v after the reconcile, want %d", d.Spec.Replicas, tc.msgReplicas)
			}
		})
	}
}
