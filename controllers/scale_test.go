package controllers

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Spec changes reach the children, observedGeneration follows, and only
// the tier whose configuration changed rolls.
func TestSpecChangeRollsOnlyWhatChanged(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "roll")
	msg0, push0 := s.bootstrapped(t, c)

	tests := []struct {
		name        string
		patch       string
		msgRolls    bool // message pod template changes
		pushRolls   bool
		msgReplicas int32
	}{
		{"message-only limit", `{"spec":{"limits":{"maxMessageBytes":4096}}}`, true, false, 2},
		{"push-only heartbeat", `{"spec":{"push":{"heartbeatInterval":"20s"}}}`, false, true, 2},
		{"scale message, nothing rolls", `{"spec":{"message":{"replicas":4}}}`, false, false, 4},
		{"shared etcd endpoints roll both", `{"spec":{"etcd":{"endpoints":["http://etcd-1.etcd:2379"]}}}`, true, true, 4},
	}
	msgBefore, pushBefore := msg0, push0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			patchSpec(t, s, ns, "roll", tc.patch)
			gen := s.cluster(t, ns, "roll").Generation
			eventually(t, waitFor, "observedGeneration follows", func() error {
				if og := s.cluster(t, ns, "roll").Status.ObservedGeneration; og != gen {
					return fmt.Errorf("observedGeneration %d, generation %d", og, gen)
				}
				return nil
			})
			var msg, push appsv1.Deployment
			if err := s.get(ns, "roll-message", &msg); err != nil {
				t.Fatal(err)
			}
			if err := s.get(ns, "roll-push", &push); err != nil {
				t.Fatal(err)
			}
			rolled := func(before, after *appsv1.Deployment) bool {
				return before.Spec.Template.Annotations[AnnotationConfigHash] != after.Spec.Template.Annotations[AnnotationConfigHash]
			}
			if got := rolled(msgBefore, &msg); got != tc.msgRolls {
				t.Errorf("message template changed = %v, want %v", got, tc.msgRolls)
			}
			if got := rolled(pushBefore, &push); got != tc.pushRolls {
				t.Errorf("push template changed = %v, want %v", got, tc.pushRolls)
			}
			if !tc.pushRolls && push.Generation != pushBefore.Generation {
				t.Errorf("push Deployment was written: generation %d -> %d", pushBefore.Generation, push.Generation)
			}
			if ptr.Deref(msg.Spec.Replicas, 0) != tc.msgReplicas {
				t.Errorf("message replicas = %v, want %d", msg.Spec.Replicas, tc.msgReplicas)
			}
			msgBefore, pushBefore = &msg, &push
		})
	}

	// Steady state: a reconcile with nothing to change writes nothing.
	writes := testutil.ToFloat64(childWrites.WithLabelValues("Deployment", "update")) +
		testutil.ToFloat64(childWrites.WithLabelValues("ConfigMap", "update")) +
		testutil.ToFloat64(childWrites.WithLabelValues("Service", "update"))
	var cm corev1.ConfigMap
	if err := s.get(ns, "roll-config", &cm); err != nil {
		t.Fatal(err)
	}
	cm.Labels["touched"] = "by-test" // an owned child's event triggers a reconcile
	if err := s.Client.Update(context.Background(), &cm); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	eventually(t, waitFor, "reconcile after touch", func() error {
		// The status is recomputed from the children; a second touch of a
		// Deployment's status makes sure the reconcile ran past the tiers.
		s.markRolledOut(t, ns, "roll-message")
		s.markRolledOut(t, ns, "roll-push")
		c := s.cluster(t, ns, "roll")
		if !c.IsReady() {
			return fmt.Errorf("not ready yet: %+v", c.Status.Conditions)
		}
		return nil
	})
	if err := s.get(ns, "roll-push", &d); err != nil {
		t.Fatal(err)
	}
	after := testutil.ToFloat64(childWrites.WithLabelValues("Deployment", "update")) +
		testutil.ToFloat64(childWrites.WithLabelValues("ConfigMap", "update")) +
		testutil.ToFloat64(childWrites.WithLabelValues("Service", "update"))
	if after != writes {
		t.Errorf("reconciles with nothing to change wrote %v children", after-writes)
	}
	if d.Generation != pushBefore.Generation {
		t.Errorf("push Deployment generation %d -> %d without a change", pushBefore.Generation, d.Generation)
	}
}

// `kubectl scale imcluster/x --replicas=N`, run as a real kubectl, sets the
// push tier; its Deployment follows; the apiserver enforces the bounds on
// the scale subresource too. kubectl get shows the printer columns and
// kubectl wait trusts the Ready condition.
func TestKubectlScale(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "scaled")
	s.bootstrapped(t, c)

	out, err := s.run("scale", "-n", ns, "imcluster/scaled", "--replicas=5")
	if err != nil {
		t.Fatalf("kubectl scale: %v: %s", err, out)
	}
	eventually(t, waitFor, "push Deployment scaled to 5", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, "scaled-push", &d); err != nil {
			return err
		}
		if ptr.Deref(d.Spec.Replicas, 0) != 5 {
			return fmt.Errorf("replicas %v", d.Spec.Replicas)
		}
		return nil
	})
	var msg appsv1.Deployment
	if err := s.get(ns, "scaled-message", &msg); err != nil || ptr.Deref(msg.Spec.Replicas, 0) != 2 {
		t.Errorf("message tier changed by kubectl scale: %v, %v", msg.Spec.Replicas, err)
	}
	if out, err := s.run("scale", "-n", ns, "imcluster/scaled", "--replicas=5000"); err == nil {
		t.Errorf("kubectl scale to 5000 accepted: %s", out)
	}

	s.markRolledOut(t, ns, "scaled-message")
	s.markRolledOut(t, ns, "scaled-push")
	if out, err := s.run("wait", "-n", ns, "imcluster/scaled", "--for=condition=Ready", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl wait: %v: %s", err, out)
	}
	// The documented wait for a change fully applied.
	if out, err := s.run("wait", "-n", ns, "imcluster/scaled", `--for=jsonpath={.status.conditions[?(@.type=="Progressing")].reason}=Stable`, "--timeout=20s"); err != nil {
		t.Fatalf("kubectl wait for Progressing Stable: %v: %s", err, out)
	}
	out, err = s.run("get", "-n", ns, "imc", "scaled")
	if err != nil {
		t.Fatalf("kubectl get imc: %v: %s", err, out)
	}
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if strings.Join(header, " ") != "NAME READY PROGRESSING DEGRADED MESSAGE PUSH BOOTSTRAP AGE" {
		t.Errorf("printer columns: %q", out)
	}
	if !strings.Contains(out, "True") || !strings.Contains(out, "Stable") || !strings.Contains(out, "5/5") || !strings.Contains(out, "Succeeded") {
		t.Errorf("kubectl get output: %q", out)
	}
	out, err = s.run("get", "-n", ns, "imc", "scaled", "-o", "wide")
	if err != nil {
		t.Fatalf("kubectl get imc -o wide: %v: %s", err, out)
	}
	header = strings.Fields(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasSuffix(strings.Join(header, " "), "BOOTSTRAP REASON MESSAGE-IMAGE PUSH-IMAGE BOOT-HASH AGE") ||
		!strings.Contains(out, "AsExpected") || strings.Count(out, c.Spec.Image) != 2 {
		t.Errorf("kubectl get -o wide: %q", out)
	}
}

func (s *suite) run(args ...string) (string, error) {
	cmd := exec.Command(s.Kubectl, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// Autoscaling creates an HPA that owns the replica count; removing it
// deletes the HPA. Disabling the PDB deletes it.
func TestAutoscalingAndPDB(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "auto")
	c.Spec.Push.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: 3, MaxReplicas: 10}
	_, push := s.bootstrapped(t, c)
	if ptr.Deref(push.Spec.Replicas, 0) != 3 {
		t.Errorf("autoscaled push starts at %v, want minReplicas 3", push.Spec.Replicas)
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	eventually(t, waitFor, "HPA created", func() error { return s.get(ns, "auto-push", &hpa) })
	if hpa.Spec.MaxReplicas != 10 || ptr.Deref(hpa.Spec.MinReplicas, 0) != 3 || hpa.Spec.ScaleTargetRef.Name != "auto-push" ||
		*hpa.Spec.Metrics[0].Resource.Target.AverageUtilization != v1alpha1.DefaultTargetCPU {
		t.Errorf("HPA spec = %+v", hpa.Spec)
	}

	// The HPA scales the Deployment; a later reconcile must not undo it.
	push.Spec.Replicas = ptr.To[int32](7)
	if err := s.Client.Update(context.Background(), push); err != nil {
		t.Fatal(err)
	}
	hashBefore := push.Spec.Template.Annotations[AnnotationConfigHash]
	patchSpec(t, s, ns, "auto", `{"spec":{"push":{"heartbeatInterval":"25s"}}}`)
	eventually(t, waitFor, "push template updated, HPA's replicas kept", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, "auto-push", &d); err != nil {
			return err
		}
		if d.Spec.Template.Annotations[AnnotationConfigHash] == hashBefore {
			return fmt.Errorf("template not updated yet")
		}
		if ptr.Deref(d.Spec.Replicas, 0) != 7 {
			return fmt.Errorf("replicas %v, want the HPA's 7", d.Spec.Replicas)
		}
		return nil
	})

	patchSpec(t, s, ns, "auto", `{"spec":{"push":{"autoscaling":null,"replicas":2,"podDisruptionBudget":{"enabled":false}}}}`)
	eventually(t, waitFor, "HPA and push PDB deleted, replicas back to spec", func() error {
		if err := s.get(ns, "auto-push", &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("HPA: %v", err)
		}
		if err := s.get(ns, "auto-push", &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PDB: %v", err)
		}
		var d appsv1.Deployment
		if err := s.get(ns, "auto-push", &d); err != nil {
			return err
		}
		if ptr.Deref(d.Spec.Replicas, 0) != 2 {
			return fmt.Errorf("replicas %v", d.Spec.Replicas)
		}
		return nil
	})
	if err := s.get(ns, "auto-message", &policyv1.PodDisruptionBudget{}); err != nil {
		t.Errorf("message PDB: %v", err)
	}
}
