package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Routine changes — scale up, scale down, an autoscaler's change, an image
// rollout, a message-tier scale — keep Ready=True in every status the
// operator writes (a watch sees each one), report the motion in
// Progressing with a reason naming it, and emit no Warning event.
func TestRoutineChangesKeepReady(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "calm")
	c.Spec.Push.Replicas = ptr.To[int32](3)
	s.bootstrapped(t, c)
	s.markRolledOut(t, ns, "calm-message")
	s.markRolledOut(t, ns, "calm-push")
	s.condition(t, ns, "calm", v1alpha1.ConditionReady, metav1.ConditionTrue)
	s.progressing(t, ns, "calm", metav1.ConditionFalse, v1alpha1.ReasonStable)

	seen := s.watchReady(t, ns, "calm")

	// startPods sets a Deployment's status as the Deployment controller
	// would in the middle of a change: its current generation seen,
	// replicas pods of which updated run the current template and avail
	// are available.
	startPods := func(name string, replicas, updated, avail int32) {
		t.Helper()
		eventually(t, waitFor, "Deployment "+name+" mid-change status", func() error {
			var d appsv1.Deployment
			if err := s.get(ns, name, &d); err != nil {
				return err
			}
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: replicas,
				UpdatedReplicas: updated, ReadyReplicas: avail, AvailableReplicas: avail}
			return s.Client.Status().Update(context.Background(), &d)
		})
	}
	replicasOf := func(name string, want int32) *appsv1.Deployment {
		t.Helper()
		var d appsv1.Deployment
		eventually(t, waitFor, fmt.Sprintf("%s at %d replicas", name, want), func() error {
			if err := s.get(ns, name, &d); err != nil {
				return err
			}
			if got := ptr.Deref(d.Spec.Replicas, 0); got != want {
				return fmt.Errorf("replicas %d", got)
			}
			return nil
		})
		return &d
	}
	settle := func() {
		t.Helper()
		s.markRolledOut(t, ns, "calm-message")
		s.markRolledOut(t, ns, "calm-push")
		s.progressing(t, ns, "calm", metav1.ConditionFalse, v1alpha1.ReasonStable)
	}

	t.Run("scale up", func(t *testing.T) {
		patchSpec(t, s, ns, "calm", `{"spec":{"push":{"replicas":5}}}`)
		replicasOf("calm-push", 5)
		startPods("calm-push", 5, 5, 3) // two new pods starting
		s.conditionWith(t, ns, "calm", v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonScaling,
			"push: scaling to 5, 5 pods, 3 available (minimum 2)")
		got := s.cluster(t, ns, "calm").Status.Push
		if got.DesiredReplicas != 5 || got.AvailableReplicas != 3 || got.MinAvailable != 2 || got.Pods != "3/5" || got.SettledReplicas != 3 {
			t.Errorf("push tier status %+v", got)
		}
		settle()
	})
	t.Run("scale down", func(t *testing.T) {
		patchSpec(t, s, ns, "calm", `{"spec":{"push":{"replicas":1}}}`)
		replicasOf("calm-push", 1)
		startPods("calm-push", 5, 5, 5) // the extra pods not yet gone
		s.progressing(t, ns, "calm", metav1.ConditionTrue, v1alpha1.ReasonScaling)
		settle()
	})
	t.Run("autoscaler scales up", func(t *testing.T) {
		patchSpec(t, s, ns, "calm", `{"spec":{"push":{"autoscaling":{"minReplicas":1,"maxReplicas":8}}}}`)
		s.condition(t, ns, "calm", v1alpha1.ConditionProgressing, metav1.ConditionFalse) // the HPA exists, nothing moves
		// The HorizontalPodAutoscaler's change, as its controller makes it.
		d := replicasOf("calm-push", 1)
		d.Spec.Replicas = ptr.To[int32](4)
		if err := s.Client.Update(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		startPods("calm-push", 4, 4, 1)
		s.progressing(t, ns, "calm", metav1.ConditionTrue, v1alpha1.ReasonScaling)
		settle()
	})
	t.Run("image rollout", func(t *testing.T) {
		patchSpec(t, s, ns, "calm", `{"spec":{"image":"registry.example/imcluster:v0.2.0"}}`)
		s.progressing(t, ns, "calm", metav1.ConditionTrue, v1alpha1.ReasonBootstrapRunning)
		s.finishJob(t, s.bootstrapJob(t, ns, "calm"), true)
		eventually(t, waitFor, "push template at the new image", func() error {
			var d appsv1.Deployment
			if err := s.get(ns, "calm-push", &d); err != nil {
				return err
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/imcluster:v0.2.0" {
				return fmt.Errorf("image %s", img)
			}
			return nil
		})
		startPods("calm-push", 5, 1, 4) // one new pod up, the four old ones still serving
		s.conditionWith(t, ns, "calm", v1alpha1.ConditionProgressing, metav1.ConditionTrue, v1alpha1.ReasonRollingOut,
			"push: rolling out registry.example/imcluster:v0.2.0, 1/4 updated, 4 available (minimum 3)")
		settle()
		got := s.cluster(t, ns, "calm")
		if got.Status.Push.Image != "registry.example/imcluster:v0.2.0" || got.Status.Message.Image != "registry.example/imcluster:v0.2.0" {
			t.Errorf("tier images %q %q", got.Status.Message.Image, got.Status.Push.Image)
		}
		if got.Status.Push.ObservedGeneration != got.Generation || got.Status.Message.ObservedGeneration != got.Generation {
			t.Errorf("tier observedGeneration %d %d, cluster generation %d", got.Status.Message.ObservedGeneration, got.Status.Push.ObservedGeneration, got.Generation)
		}
	})
	t.Run("message tier scale", func(t *testing.T) {
		patchSpec(t, s, ns, "calm", `{"spec":{"message":{"replicas":4}}}`)
		replicasOf("calm-message", 4)
		s.progressing(t, ns, "calm", metav1.ConditionTrue, v1alpha1.ReasonScaling)
		settle()
	})

	seen.check(t)
	s.waitEventOf(t, ns, "calm", "Scaling", "Normal")
	s.waitEventOf(t, ns, "calm", "RollingOut", "Normal")
	// A last event of its own (Paused), so that every event emitted
	// before it has been written when noWarnings lists them.
	s.setPaused(t, ns, "calm", true)
	s.waitEventOf(t, ns, "calm", "Paused", "Normal")
	s.noWarnings(t, ns, "calm")
}

// A tier whose pods all fail their readiness probe (no available pod, as
// the Deployment then reports) makes the cluster Ready=False and
// Degraded=True, with Warning events.
func TestTierWithoutPodsWarns(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	s.bootstrapped(t, sampleCluster(ns, "sick"))
	s.markRolledOut(t, ns, "sick-message")
	s.markRolledOut(t, ns, "sick-push")
	s.condition(t, ns, "sick", v1alpha1.ConditionReady, metav1.ConditionTrue)

	eventually(t, waitFor, "push pods unready", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, "sick-push", &d); err != nil {
			return err
		}
		d.Status.ReadyReplicas, d.Status.AvailableReplicas = 0, 0
		return s.Client.Status().Update(context.Background(), &d)
	})
	if r := s.condition(t, ns, "sick", v1alpha1.ConditionReady, metav1.ConditionFalse); r.Reason != v1alpha1.ReasonTierUnavailable {
		t.Errorf("Ready reason %s: %s", r.Reason, r.Message)
	}
	if d := s.condition(t, ns, "sick", v1alpha1.ConditionDegraded, metav1.ConditionTrue); d.Reason != v1alpha1.ReasonTierUnavailable ||
		!strings.Contains(d.Message, "push: 0/2 available (minimum 1)") {
		t.Errorf("Degraded %s: %s", d.Reason, d.Message)
	}
	s.waitEventOf(t, ns, "sick", "NotReady", "Warning")
	s.waitEventOf(t, ns, "sick", "Degraded", "Warning")

	// The pods come back: Ready again, Degraded cleared, Normal events.
	s.markRolledOut(t, ns, "sick-push")
	s.condition(t, ns, "sick", v1alpha1.ConditionReady, metav1.ConditionTrue)
	s.condition(t, ns, "sick", v1alpha1.ConditionDegraded, metav1.ConditionFalse)
	s.waitEventOf(t, ns, "sick", "Recovered", "Normal")
}

// The pause annotation stops the operator from applying a changed spec
// (the status says so, at the new generation); removing it applies it.
func TestPauseStopsReconciliation(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "held")
	_, push0 := s.bootstrapped(t, c)
	s.markRolledOut(t, ns, "held-message")
	s.markRolledOut(t, ns, "held-push")
	s.condition(t, ns, "held", v1alpha1.ConditionReady, metav1.ConditionTrue)
	if err := s.get(ns, "held-push", push0); err != nil {
		t.Fatal(err)
	}

	s.setPaused(t, ns, "held", true)
	s.progressing(t, ns, "held", metav1.ConditionFalse, v1alpha1.ReasonPaused)
	s.waitEventOf(t, ns, "held", "Paused", "Normal")

	patchSpec(t, s, ns, "held", `{"spec":{"push":{"replicas":4,"heartbeatInterval":"20s"}}}`)
	// Paused at the new generation: the reconcile of that spec ran (it
	// writes the children before the status) and changed nothing.
	s.progressing(t, ns, "held", metav1.ConditionFalse, v1alpha1.ReasonPaused)
	var d appsv1.Deployment
	if err := s.get(ns, "held-push", &d); err != nil {
		t.Fatal(err)
	}
	if d.Generation != push0.Generation || ptr.Deref(d.Spec.Replicas, 0) != 2 {
		t.Errorf("push Deployment changed while paused: generation %d -> %d, replicas %v", push0.Generation, d.Generation, d.Spec.Replicas)
	}
	got := s.cluster(t, ns, "held")
	if got.Status.Push.ObservedGeneration >= got.Generation || !got.IsReady() {
		t.Errorf("paused: push tier observedGeneration %d, cluster generation %d, ready %v", got.Status.Push.ObservedGeneration, got.Generation, got.IsReady())
	}

	s.setPaused(t, ns, "held", false)
	eventually(t, waitFor, "the held change applied", func() error {
		if err := s.get(ns, "held-push", &d); err != nil {
			return err
		}
		if ptr.Deref(d.Spec.Replicas, 0) != 4 || d.Spec.Template.Annotations[AnnotationConfigHash] == push0.Spec.Template.Annotations[AnnotationConfigHash] {
			return fmt.Errorf("replicas %v, config hash unchanged", d.Spec.Replicas)
		}
		return nil
	})
	s.waitEventOf(t, ns, "held", "Resumed", "Normal")
	s.markRolledOut(t, ns, "held-push")
	s.progressing(t, ns, "held", metav1.ConditionFalse, v1alpha1.ReasonStable)
	if got := s.cluster(t, ns, "held"); got.Status.Push.ObservedGeneration != got.Generation {
		t.Errorf("push tier observedGeneration %d after resume, cluster generation %d", got.Status.Push.ObservedGeneration, got.Generation)
	}
	s.noWarnings(t, ns, "held")
}

// setPaused sets or removes the pause annotation.
func (s *suite) setPaused(t *testing.T, ns, name string, paused bool) {
	t.Helper()
	value := "null"
	if paused {
		value = `"true"`
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, v1alpha1.AnnotationPaused, value)
	if err := s.Client.Patch(context.Background(), &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, rawMerge(patch)); err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
}

// progressing waits for Progressing=status with reason at the current
// generation.
func (s *suite) progressing(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	return s.conditionWith(t, ns, name, v1alpha1.ConditionProgressing, status, reason, "")
}

// conditionWith waits for the condition typ=status with reason, and a
// message containing text, at the current generation.
func (s *suite) conditionWith(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason, text string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, waitFor, fmt.Sprintf("%s=%s (%s) %q", typ, status, reason, text), func() error {
		c := s.cluster(t, ns, name)
		p := c.GetCondition(typ)
		if p == nil || p.Status != status || p.Reason != reason || p.ObservedGeneration != c.Generation || !strings.Contains(p.Message, text) {
			return fmt.Errorf("%s = %+v at generation %d", typ, p, c.Generation)
		}
		got = *p
		return nil
	})
	return got
}

// readyWatch records every Ready condition of the cluster's status writes.
type readyWatch struct {
	mu       sync.Mutex
	notReady []string
	writes   int
	stop     func()
}

// watchReady watches the cluster from its current resourceVersion and
// records each status write whose Ready condition is not True.
func (s *suite) watchReady(t *testing.T, ns, name string) *readyWatch {
	t.Helper()
	wc, err := client.NewWithWatch(s.Config, client.Options{Scheme: testScheme})
	if err != nil {
		t.Fatal(err)
	}
	var list v1alpha1.IMClusterList
	if err := wc.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &v1alpha1.IMClusterList{}, client.InNamespace(ns),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		t.Fatal(err)
	}
	rw := &readyWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			c, ok := ev.Object.(*v1alpha1.IMCluster)
			if !ok || c.Name != name || ev.Type != watch.Modified {
				continue
			}
			rw.mu.Lock()
			rw.writes++
			if r := c.GetCondition(v1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
				rw.notReady = append(rw.notReady, fmt.Sprintf("rv %s: %+v", c.ResourceVersion, r))
			}
			rw.mu.Unlock()
		}
	}()
	rw.stop = func() { w.Stop(); <-done }
	t.Cleanup(rw.stop)
	return rw
}

func (rw *readyWatch) check(t *testing.T) {
	t.Helper()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.writes == 0 {
		t.Errorf("the watch saw no write of the cluster")
	}
	for _, n := range rw.notReady {
		t.Errorf("Ready not True in a status write: %s", n)
	}
}

// waitEventOf waits for an event with reason and type on the cluster.
func (s *suite) waitEventOf(t *testing.T, ns, name, reason, typ string) {
	t.Helper()
	eventually(t, waitFor, typ+" event "+reason, func() error {
		evs, err := s.clusterEvents(ns, name)
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs {
			if e.Reason == reason && e.Type == typ {
				return nil
			}
			seen = append(seen, e.Type+" "+e.Reason)
		}
		return fmt.Errorf("seen %v", seen)
	})
}

// noWarnings fails on any Warning event on the cluster. The recorder
// writes events in the order they are emitted, so after waiting for an
// event emitted last, one emitted before it is already written.
func (s *suite) noWarnings(t *testing.T, ns, name string) {
	t.Helper()
	evs, err := s.clusterEvents(ns, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == "Warning" {
			t.Errorf("Warning event %s: %s", e.Reason, e.Note)
		}
	}
}

func (s *suite) clusterEvents(ns, name string) ([]eventsv1.Event, error) {
	var evs eventsv1.EventList
	if err := s.Client.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "IMCluster" {
			out = append(out, e)
		}
	}
	return out, nil
}

// Paused, a deleted Deployment is not recreated (and the status says the
// tier is unavailable); resumed, it is.
func TestPausedRecreatesNothing(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	s.bootstrapped(t, sampleCluster(ns, "frozen"))
	s.markRolledOut(t, ns, "frozen-message")
	s.markRolledOut(t, ns, "frozen-push")
	s.condition(t, ns, "frozen", v1alpha1.ConditionReady, metav1.ConditionTrue)
	s.setPaused(t, ns, "frozen", true)
	s.progressing(t, ns, "frozen", metav1.ConditionFalse, v1alpha1.ReasonPaused)

	var d appsv1.Deployment
	if err := s.get(ns, "frozen-push", &d); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Delete(context.Background(), &d); err != nil {
		t.Fatal(err)
	}
	// The reconcile of the deletion wrote this status, after it would
	// have recreated the Deployment.
	s.conditionWith(t, ns, "frozen", v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonTierUnavailable, "push: Deployment not created yet")
	var again appsv1.Deployment
	if err := s.get(ns, "frozen-push", &again); err == nil && again.UID != d.UID {
		t.Fatalf("push Deployment recreated while paused")
	}
	s.waitEventOf(t, ns, "frozen", "NotReady", "Warning")

	s.setPaused(t, ns, "frozen", false)
	eventually(t, waitFor, "push Deployment recreated after resume", func() error {
		if err := s.get(ns, "frozen-push", &again); err != nil {
			return err
		}
		if again.UID == d.UID {
			return fmt.Errorf("still the deleted one")
		}
		return nil
	})
}
