package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Deployment status (set by the test: no kubelet runs) becomes conditions.
func TestConditionsFollowDeploymentStatus(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "cond")
	s.bootstrapped(t, c)

	// The first pods start: not ready yet, not trouble either.
	if p := s.condition(t, ns, "cond", v1alpha1.ConditionProgressing, metav1.ConditionTrue); p.Reason != v1alpha1.ReasonCreating {
		t.Errorf("Progressing reason while the first pods start = %s", p.Reason)
	}
	if r := s.condition(t, ns, "cond", v1alpha1.ConditionReady, metav1.ConditionFalse); r.Reason != v1alpha1.ReasonCreating {
		t.Errorf("Ready reason while the first pods start = %s", r.Reason)
	}
	s.condition(t, ns, "cond", v1alpha1.ConditionDegraded, metav1.ConditionFalse)
	s.markRolledOut(t, ns, "cond-message")
	s.markRolledOut(t, ns, "cond-push")
	ready := s.condition(t, ns, "cond", v1alpha1.ConditionReady, metav1.ConditionTrue)
	if ready.Reason != v1alpha1.ReasonAllReady {
		t.Errorf("Ready reason = %s", ready.Reason)
	}
	s.condition(t, ns, "cond", v1alpha1.ConditionProgressing, metav1.ConditionFalse)
	s.condition(t, ns, "cond", v1alpha1.ConditionDegraded, metav1.ConditionFalse)
	got := s.cluster(t, ns, "cond")
	if got.Status.Push.ReadyReplicas != 2 || got.Status.Message.Replicas != 2 {
		t.Errorf("tier status: %+v %+v", got.Status.Message, got.Status.Push)
	}
	s.waitEvent(t, ns, "cond", "Ready")
	if v := testutil.ToFloat64(clusterCondition.WithLabelValues(ns, "cond", v1alpha1.ConditionReady)); v != 1 {
		t.Errorf("imcluster_operator_cluster_condition{condition=Ready} = %v, want 1", v)
	}

	// A push pod stops being ready: within the PDB's budget (maxUnavailable
	// 1 of 2), so Ready stays True and says so.
	var d appsv1.Deployment
	setAvailable := func(n int32) {
		t.Helper()
		eventually(t, waitFor, "push Deployment status set", func() error {
			if err := s.get(ns, "cond-push", &d); err != nil {
				return err
			}
			d.Status.ReadyReplicas, d.Status.AvailableReplicas = n, n
			return s.Client.Status().Update(context.Background(), &d)
		})
	}
	setAvailable(1)
	eventually(t, waitFor, "Ready message shows 1/2 available", func() error {
		r := s.cluster(t, ns, "cond").GetCondition(v1alpha1.ConditionReady)
		if r == nil || r.Status != metav1.ConditionTrue || !strings.Contains(r.Message, "push: 1/2 available (minimum 1)") {
			return fmt.Errorf("Ready = %+v", r)
		}
		return nil
	})
	s.condition(t, ns, "cond", v1alpha1.ConditionDegraded, metav1.ConditionFalse)

	// The last one goes too: below the minimum, Ready False and Degraded.
	setAvailable(0)
	if r := s.condition(t, ns, "cond", v1alpha1.ConditionReady, metav1.ConditionFalse); r.Reason != v1alpha1.ReasonTierUnavailable || !strings.Contains(r.Message, "push: 0/2 available") {
		t.Errorf("Ready = %s: %q", r.Reason, r.Message)
	}
	if deg := s.condition(t, ns, "cond", v1alpha1.ConditionDegraded, metav1.ConditionTrue); deg.Reason != v1alpha1.ReasonTierUnavailable {
		t.Errorf("Degraded reason = %s", deg.Reason)
	}

	// The rollout exceeds its deadline: Degraded with that reason.
	if err := s.get(ns, "cond-push", &d); err != nil {
		t.Fatal(err)
	}
	d.Status.Conditions = []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded",
		Message: `ReplicaSet "cond-push-abc" has timed out progressing.`, LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	if err := s.Client.Status().Update(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	deg := s.conditionWith(t, ns, "cond", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonProgressDeadline, "")
	if v := testutil.ToFloat64(clusterCondition.WithLabelValues(ns, "cond", v1alpha1.ConditionDegraded)); v != 1 {
		t.Errorf("imcluster_operator_cluster_condition{condition=Degraded} = %v, want 1", v)
	}
	if deg.Reason != v1alpha1.ReasonProgressDeadline || !strings.Contains(deg.Message, "timed out") {
		t.Errorf("Degraded = %s: %s", deg.Reason, deg.Message)
	}
}

// A failed bootstrap Job makes the cluster Degraded with a reason; the tiers
// are not created; deleting the Job retries it.
func TestBootstrapFailureDegrades(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "broken")
	if err := s.Client.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	job := s.bootstrapJob(t, ns, "broken")
	s.finishJob(t, job, false)

	deg := s.condition(t, ns, "broken", v1alpha1.ConditionDegraded, metav1.ConditionTrue)
	if deg.Reason != v1alpha1.ReasonBootstrapFailed || !strings.Contains(deg.Message, "BackoffLimitExceeded") {
		t.Errorf("Degraded = %s: %q", deg.Reason, deg.Message)
	}
	if r := s.condition(t, ns, "broken", v1alpha1.ConditionReady, metav1.ConditionFalse); r.Reason != v1alpha1.ReasonBootstrapFailed {
		t.Errorf("Ready reason = %s", r.Reason)
	}
	if p := s.condition(t, ns, "broken", v1alpha1.ConditionProgressing, metav1.ConditionFalse); p.Reason != v1alpha1.ReasonBootstrapFailed {
		t.Errorf("Progressing reason = %s", p.Reason)
	}
	if got := s.cluster(t, ns, "broken").Status.Bootstrap.Phase; got != v1alpha1.BootstrapFailed {
		t.Errorf("bootstrap phase = %s", got)
	}
	if err := s.get(ns, "broken-push", &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("push Deployment created despite the failed bootstrap: %v", err)
	}
	s.waitEvent(t, ns, "broken", "BootstrapFailed")

	// Retry: delete the failed Job; a new one runs, then succeeds.
	uid := job.UID
	if err := s.Client.Delete(context.Background(), job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	var retry = job
	eventually(t, waitFor, "bootstrap Job recreated", func() error {
		retry = s.bootstrapJob(t, ns, "broken")
		if retry.UID == uid {
			return fmt.Errorf("old Job still there")
		}
		return nil
	})
	s.condition(t, ns, "broken", v1alpha1.ConditionDegraded, metav1.ConditionFalse)
	s.finishJob(t, retry, true)
	s.deployment(t, c, TierPush)
}

// waitEvent waits for an events.k8s.io event with reason on the cluster.
func (s *suite) waitEvent(t *testing.T, ns, name, reason string) {
	t.Helper()
	eventually(t, waitFor, "event "+reason, func() error {
		var evs eventsv1.EventList
		if err := s.Client.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Regarding.Name == name && e.Reason == reason {
				return nil
			}
			seen = append(seen, e.Reason)
		}
		return fmt.Errorf("seen %v", seen)
	})
}

// A child name taken by an object the cluster does not control: the
// operator does not adopt or overwrite it, and says so (Degraded).
func TestForeignChildDegrades(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	// Without the managed-by label: the operator's cache never shows it.
	foreign := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-config"}, Data: map[string]string{"mine": "yes"}}
	if err := s.Client.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Create(context.Background(), sampleCluster(ns, "taken")); err != nil {
		t.Fatal(err)
	}
	deg := s.condition(t, ns, "taken", v1alpha1.ConditionDegraded, metav1.ConditionTrue)
	if deg.Reason != v1alpha1.ReasonReconcileError || !strings.Contains(deg.Message, "not controlled by IMCluster taken") {
		t.Errorf("Degraded = %s: %s", deg.Reason, deg.Message)
	}
	var cm corev1.ConfigMap
	if err := s.get(ns, "taken-config", &cm); err != nil || cm.Data["mine"] != "yes" || len(cm.OwnerReferences) != 0 {
		t.Errorf("foreign ConfigMap changed: %+v, %v", cm, err)
	}
	s.waitEvent(t, ns, "taken", "Degraded")
}
