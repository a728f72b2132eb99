package controllers

import (
	"context"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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
	s.bootstrapped(t, c)

	tests := []struct {
		name  string
		patch string // applied before the reconcile; "" for none
	}{
		{"nothing changed", ""},
		{"message tier scaled", `{"spec":{"message":{"replicas":3}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.patch != "" {
				patchSpec(t, s, ns, "reads", tc.patch)
			}
			cc := &countingClient{Client: s.Client, reads: map[client.ObjectKey]int{}}
			r := &IMClusterReconciler{Client: cc, Scheme: testScheme}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "reads"}}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			for _, tier := range []string{TierMessage, TierPush} {
				key := client.ObjectKey{Namespace: ns, Name: tierName(c, tier)}
				if n := cc.reads[key]; n != 1 {
					t.Errorf("%s Deployment read %d times in one reconcile, want 1", tier, n)
				}
			}
		})
	}
}
