package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Every pod the operator defines (both tiers, the bootstrap Job) passes the
// "restricted" Pod Security Standard, enforced by the apiserver's own
// PodSecurity admission on a namespace labelled for it.
func TestPodsMeetRestrictedPodSecurity(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "psa")
	msg, push := s.bootstrapped(t, c)
	job := s.bootstrapJob(t, ns, "psa")

	// The pods are tried in a second namespace labelled at creation: a label
	// added later reaches PodSecurity admission through its namespace
	// informer, so a pod created right after the update may not be checked.
	restricted := s.namespace(t,
		"pod-security.kubernetes.io/enforce", "restricted",
		"pod-security.kubernetes.io/enforce-version", "latest")
	create := func(name string, spec corev1.PodSpec) error {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: name}, Spec: spec}
		return s.Client.Create(context.Background(), pod, client.DryRunAll)
	}

	// The control: a pod that breaks the standard is refused here.
	bad := *msg.Spec.Template.Spec.DeepCopy()
	bad.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	if err := create("control", bad); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("PodSecurity admission does not enforce here (err=%v)", err)
	}
	for name, spec := range map[string]corev1.PodSpec{
		"message": msg.Spec.Template.Spec, "push": push.Spec.Template.Spec, "bootstrap": job.Spec.Template.Spec,
	} {
		if err := create(name, spec); err != nil {
			t.Errorf("%s pod refused under restricted: %v", name, err)
		}
	}
}
