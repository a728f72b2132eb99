package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// Create an IMCluster: the bootstrap Job gates the tiers, then every child
// exists with the right spec and a controller owner reference.
func TestCreateMakesEveryChild(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "chat")
	if err := s.Client.Create(context.Background(), c); err != nil {
		t.Fatalf("create: %v", err)
	}

	// Before the bootstrap Job succeeds: config, Services, PDBs and the
	// Job exist, the Deployments do not.
	job := s.bootstrapJob(t, ns, "chat")
	cond := s.condition(t, ns, "chat", v1alpha1.ConditionReady, metav1.ConditionFalse)
	if cond.Reason != v1alpha1.ReasonBootstrapPending {
		t.Errorf("Ready reason before bootstrap = %s, want %s", cond.Reason, v1alpha1.ReasonBootstrapPending)
	}
	if p := s.condition(t, ns, "chat", v1alpha1.ConditionProgressing, metav1.ConditionTrue); p.Reason != v1alpha1.ReasonBootstrapRunning {
		t.Errorf("Progressing reason = %s, want %s", p.Reason, v1alpha1.ReasonBootstrapRunning)
	}
	var d appsv1.Deployment
	if err := s.get(ns, "chat-message", &d); !apierrors.IsNotFound(err) {
		t.Fatalf("message Deployment exists before bootstrap (err=%v)", err)
	}
	if got := job.Spec.Template.Spec.Containers[0].Command; !slices.Equal(got, []string{binary, "bootstrap"}) {
		t.Errorf("bootstrap command = %v", got)
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever || ptr.Deref(job.Spec.BackoffLimit, -1) != v1alpha1.DefaultBackoffLimit {
		t.Errorf("bootstrap Job restart policy %s, backoffLimit %v", job.Spec.Template.Spec.RestartPolicy, job.Spec.BackoffLimit)
	}

	s.finishJob(t, job, true)
	msg, push := s.deployment(t, c, TierMessage), s.deployment(t, c, TierPush)
	c = s.cluster(t, ns, "chat")

	var cm corev1.ConfigMap
	var msgSvc, pushSvc, internalSvc corev1.Service
	var msgPDB, pushPDB policyv1.PodDisruptionBudget
	children := map[string]client.Object{
		"chat-config": &cm, "chat-message": &msgSvc, "chat-push": &pushSvc, "chat-push-internal": &internalSvc,
	}
	for name, obj := range children {
		if err := s.get(ns, name, obj); err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
	}
	if err := s.get(ns, "chat-message", &msgPDB); err != nil {
		t.Fatalf("message PDB: %v", err)
	}
	if err := s.get(ns, "chat-push", &pushPDB); err != nil {
		t.Fatalf("push PDB: %v", err)
	}
	for _, obj := range []client.Object{&cm, &msgSvc, &pushSvc, &internalSvc, &msgPDB, &pushPDB, msg, push, job} {
		if !metav1.IsControlledBy(obj, c) {
			t.Errorf("%T %s is not controlled by the IMCluster: %v", obj, obj.GetName(), obj.GetOwnerReferences())
		}
	}

	// The ConfigMap holds exactly the env names services/config reads.
	want := map[string]string{
		config.EnvKafkaBrokers:      "kafka-0.kafka:9092",
		config.EnvKafkaTopic:        "im.messages",
		config.EnvKafkaDLQTopic:     "im.messages.dlq",
		config.EnvKafkaPartitions:   "12",
		config.EnvKafkaReplication:  "3",
		config.EnvKafkaGroup:        "im-pipeline",
		config.EnvCassandraHosts:    "cassandra-0.cassandra:9042",
		config.EnvCassandraKeyspace: "imcluster",
		config.EnvCassandraRepl:     "SimpleStrategy:3",
		config.EnvEtcdEndpoints:     "http://etcd-0.etcd:2379",
		config.EnvEtcdPrefix:        "/imcluster/" + ns + "/chat",
		config.EnvUserKeyFile:       "/etc/imcluster/auth/user",
		config.EnvServiceKeyFile:    "/etc/imcluster/auth/service",
		config.EnvInternalKeyFile:   "/etc/imcluster/auth/internal",
		config.EnvMaxMessageBytes:   "16384",
		config.EnvRecallWindow:      "2m0s",
		config.EnvFeedRetention:     "720h0m0s",
		config.EnvFetchWait:         "30ms",
		config.EnvGroupMaxMembers:   "1000",
		config.EnvGroupMaxPerUser:   "500",
		config.EnvMessageURL:        fmt.Sprintf("http://chat-message.%s.svc:8080", ns),
		config.EnvMaxConnections:    "50000",
		config.EnvHeartbeatInterval: "30s",
		config.EnvSendQueueLength:   "256",
		config.EnvPresenceLeaseTTL:  "10s",
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("ConfigMap %s = %q, want %q", k, cm.Data[k], v)
		}
	}
	if len(cm.Data) != len(want) {
		t.Errorf("ConfigMap has %d keys, want %d: %v", len(cm.Data), len(want), cm.Data)
	}
	// And what the services load from it, plus the container env, is valid.
	for _, d := range []*appsv1.Deployment{msg, push} {
		env := map[string]string{}
		for k, v := range cm.Data {
			env[k] = v
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		get := func(k string) string { return env[k] }
		var err error
		if d == msg {
			_, err = config.LoadMessage(get)
		} else {
			_, err = config.LoadPush(get)
		}
		if err != nil {
			t.Errorf("%s: services/config refuses the rendered env: %v", d.Name, err)
		}
	}

	checkDeployment(t, msg, "message", 2, []string{"http", "metrics"}, 5+25+10)
	checkDeployment(t, push, "push", 2, []string{"ws", "internal", "metrics"}, 5+30+10)
	if got := envValue(push, config.EnvAdvertiseURL); got != "http://$(POD_IP):9091" {
		t.Errorf("push %s = %q", config.EnvAdvertiseURL, got)
	}
	if got := envValue(push, config.EnvShutdownGrace); got != "30s" {
		t.Errorf("push %s = %q, want the drain time 30s", config.EnvShutdownGrace, got)
	}
	if msg.Spec.Template.Annotations[AnnotationConfigHash] == "" || push.Spec.Template.Annotations[AnnotationConfigHash] == "" {
		t.Error("pod templates lack the config-hash annotation")
	}

	if msgSvc.Spec.Type != corev1.ServiceTypeClusterIP || pushSvc.Spec.Ports[0].Port != 80 || pushSvc.Spec.Ports[0].TargetPort.StrVal != "ws" {
		t.Errorf("Services: message %s, push %+v", msgSvc.Spec.Type, pushSvc.Spec.Ports)
	}
	if internalSvc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("push-internal Service is not headless: %q", internalSvc.Spec.ClusterIP)
	}
	if msgPDB.Spec.MaxUnavailable == nil || msgPDB.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("message PDB maxUnavailable = %v, want 1", msgPDB.Spec.MaxUnavailable)
	}

	// Status: bootstrap done, tiers' first pods starting (no kubelet here),
	// selector set.
	// The reconcile that creates the Deployments patches the status after
	// them, so a status still saying "bootstrap running" may be read here:
	// wait for the patch.
	eventually(t, waitFor, "status: bootstrap succeeded, tiers being created", func() error {
		c = s.cluster(t, ns, "chat")
		p := c.GetCondition(v1alpha1.ConditionProgressing)
		if p == nil || p.Status != metav1.ConditionTrue || p.Reason != v1alpha1.ReasonCreating || p.ObservedGeneration != c.Generation {
			return fmt.Errorf("Progressing %+v", p)
		}
		if c.Status.Bootstrap.Phase != v1alpha1.BootstrapSucceeded {
			return fmt.Errorf("bootstrap %+v", c.Status.Bootstrap)
		}
		return nil
	})
	if c.Status.Push.Selector == "" {
		t.Errorf("status: push selector %q", c.Status.Push.Selector)
	}
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, tier string, replicas int32, ports []string, grace int64) {
	t.Helper()
	if ptr.Deref(d.Spec.Replicas, -1) != replicas {
		t.Errorf("%s replicas = %v, want %d", d.Name, d.Spec.Replicas, replicas)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("%s strategy = %+v, want RollingUpdate with maxUnavailable 0", d.Name, d.Spec.Strategy)
	}
	pod := d.Spec.Template.Spec
	if ptr.Deref(pod.TerminationGracePeriodSeconds, 0) != grace {
		t.Errorf("%s grace period = %v, want %d", d.Name, pod.TerminationGracePeriodSeconds, grace)
	}
	if !ptr.Deref(pod.SecurityContext.RunAsNonRoot, false) || ptr.Deref(pod.AutomountServiceAccountToken, true) {
		t.Errorf("%s pod security: %+v, automount %v", d.Name, pod.SecurityContext, pod.AutomountServiceAccountToken)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s has %d containers", d.Name, len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if !slices.Equal(ctr.Command, []string{binary, tier}) {
		t.Errorf("%s command = %v", d.Name, ctr.Command)
	}
	sc := ctr.SecurityContext
	if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("%s container security context = %+v", d.Name, sc)
	}
	var names []string
	for _, p := range ctr.Ports {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, ports) {
		t.Errorf("%s ports = %v, want %v", d.Name, names, ports)
	}
	if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		ctr.LivenessProbe == nil || ctr.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ctr.ReadinessProbe.HTTPGet.Port.StrVal != "metrics" {
		t.Errorf("%s probes: readiness %+v liveness %+v", d.Name, ctr.ReadinessProbe, ctr.LivenessProbe)
	}
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("%s has no preStop pause", d.Name)
	}
	if len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].ConfigMapRef == nil {
		t.Errorf("%s envFrom = %+v", d.Name, ctr.EnvFrom)
	}
	mounts := map[string]bool{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = m.ReadOnly
	}
	if ro, ok := mounts[authDir]; !ok || !ro {
		t.Errorf("%s does not mount the auth Secret read-only at %s: %v", d.Name, authDir, mounts)
	}
	if _, ok := mounts["/tmp"]; !ok {
		t.Errorf("%s has no writable /tmp", d.Name)
	}
}

func envValue(d *appsv1.Deployment, name string) string {
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// Delete children: each comes back, with a new UID.
func TestDeletedChildIsRecreated(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "again")
	msg, push := s.bootstrapped(t, c)
	children := []client.Object{msg, push, &corev1.ConfigMap{}, &corev1.Service{}, &policyv1.PodDisruptionBudget{}}
	names := []string{msg.Name, push.Name, "again-config", "again-push", "again-message"}
	for i, obj := range children {
		if err := s.get(ns, names[i], obj); err != nil {
			t.Fatalf("get %s: %v", names[i], err)
		}
		uid := obj.GetUID()
		if err := s.Client.Delete(context.Background(), obj); err != nil {
			t.Fatalf("delete %s: %v", names[i], err)
		}
		fresh := obj.DeepCopyObject().(client.Object)
		eventually(t, waitFor, fmt.Sprintf("%T %s recreated", obj, names[i]), func() error {
			if err := s.get(ns, names[i], fresh); err != nil {
				return err
			}
			if fresh.GetUID() == uid {
				return fmt.Errorf("still the old object")
			}
			return nil
		})
	}
}

// A finished bootstrap is remembered: deleting its Job does not rerun it.
func TestFinishedBootstrapIsNotRerun(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "once")
	s.bootstrapped(t, c)
	var jobs batchv1.JobList
	if err := s.Client.List(context.Background(), &jobs, client.InNamespace(ns)); err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs: %d, %v", len(jobs.Items), err)
	}
	if err := s.Client.Delete(context.Background(), &jobs.Items[0], client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatalf("delete job: %v", err)
	}
	// Trigger a reconcile through a spec change that does not touch the
	// bootstrap configuration, then check no Job came back.
	patchSpec(t, s, ns, "once", `{"spec":{"message":{"replicas":3}}}`)
	eventually(t, waitFor, "message scaled", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, "once-message", &d); err != nil {
			return err
		}
		if ptr.Deref(d.Spec.Replicas, 0) != 3 {
			return fmt.Errorf("replicas %v", d.Spec.Replicas)
		}
		return nil
	})
	if err := s.Client.List(context.Background(), &jobs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.DeletionTimestamp == nil {
			t.Errorf("bootstrap rerun: Job %s exists", j.Name)
		}
	}
}

func patchSpec(t *testing.T, s *suite, ns, name, mergePatch string) {
	t.Helper()
	c := &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := s.Client.Patch(context.Background(), c, rawMerge(mergePatch)); err != nil {
		t.Fatalf("patch %s: %v", mergePatch, err)
	}
}

// The push Service follows type changes, keeping allocated node ports
// while the type still has them.
func TestPushServiceTypeChanges(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "svc")
	c.Spec.Push.Service = v1alpha1.PushServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Port: 443, Annotations: map[string]string{"lb.example/type": "nlb"}}
	if err := s.Client.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	eventually(t, waitFor, "LoadBalancer Service with a node port", func() error {
		if err := s.get(ns, "svc-push", &svc); err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].NodePort == 0 || svc.Annotations["lb.example/type"] != "nlb" {
			return fmt.Errorf("type %s, ports %+v, annotations %v", svc.Spec.Type, svc.Spec.Ports, svc.Annotations)
		}
		return nil
	})
	nodePort := svc.Spec.Ports[0].NodePort
	for _, step := range []struct {
		patch    string
		typ      corev1.ServiceType
		nodePort func(int32) bool
	}{
		{`{"spec":{"push":{"service":{"type":"NodePort","port":8443,"annotations":null}}}}`, corev1.ServiceTypeNodePort, func(p int32) bool { return p == nodePort }},
		{`{"spec":{"push":{"service":{"type":"ClusterIP"}}}}`, corev1.ServiceTypeClusterIP, func(p int32) bool { return p == 0 }},
		{`{"spec":{"push":{"service":{"type":"LoadBalancer"}}}}`, corev1.ServiceTypeLoadBalancer, func(p int32) bool { return p != 0 }},
	} {
		patchSpec(t, s, ns, "svc", step.patch)
		eventually(t, waitFor, "Service type "+string(step.typ), func() error {
			if err := s.get(ns, "svc-push", &svc); err != nil {
				return err
			}
			if svc.Spec.Type != step.typ || !step.nodePort(svc.Spec.Ports[0].NodePort) {
				return fmt.Errorf("type %s, ports %+v", svc.Spec.Type, svc.Spec.Ports)
			}
			if _, ok := svc.Annotations["lb.example/type"]; ok {
				return fmt.Errorf("annotation removed from the spec is still on the Service")
			}
			return nil
		})
		if d := s.cluster(t, ns, "svc").GetCondition(v1alpha1.ConditionDegraded); d != nil && d.Status == metav1.ConditionTrue {
			t.Fatalf("Degraded after %s: %s", step.patch, d.Message)
		}
	}
}

// An image upgrade runs the new bootstrap (schema migrations) first: the
// tiers keep the old image until the new Job succeeded, then both roll, and
// the old Job is removed.
func TestImageUpgradeWaitsForBootstrap(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "upg")
	msg0, _ := s.bootstrapped(t, c)
	oldJob := s.bootstrapJob(t, ns, "upg")

	patchSpec(t, s, ns, "upg", `{"spec":{"image":"registry.example/imcluster:v0.2.0"}}`)
	var newJob *batchv1.Job
	eventually(t, waitFor, "a new bootstrap Job", func() error {
		newJob = s.bootstrapJob(t, ns, "upg")
		if newJob.Name == oldJob.Name {
			return fmt.Errorf("still %s", newJob.Name)
		}
		return nil
	})
	if img := newJob.Spec.Template.Spec.Containers[0].Image; img != "registry.example/imcluster:v0.2.0" {
		t.Errorf("new Job image %s", img)
	}
	p := s.condition(t, ns, "upg", v1alpha1.ConditionProgressing, metav1.ConditionTrue)
	if p.Reason != v1alpha1.ReasonBootstrapRunning {
		t.Errorf("Progressing reason = %s", p.Reason)
	}
	var msg appsv1.Deployment
	if err := s.get(ns, "upg-message", &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Spec.Template.Spec.Containers[0].Image != msg0.Spec.Template.Spec.Containers[0].Image || msg.Generation != msg0.Generation {
		t.Fatalf("message tier changed before the new bootstrap finished: %s", msg.Spec.Template.Spec.Containers[0].Image)
	}

	s.finishJob(t, newJob, true)
	for _, tier := range []string{"upg-message", "upg-push"} {
		eventually(t, waitFor, tier+" on the new image", func() error {
			var d appsv1.Deployment
			if err := s.get(ns, tier, &d); err != nil {
				return err
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/imcluster:v0.2.0" {
				return fmt.Errorf("image %s", img)
			}
			return nil
		})
	}
	eventually(t, waitFor, "old bootstrap Job removed", func() error {
		var j batchv1.Job
		err := s.get(ns, oldJob.Name, &j)
		if apierrors.IsNotFound(err) || (err == nil && j.DeletionTimestamp != nil) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// A child whose managed-by label is removed drops out of the operator's
// cache; the operator finds it on the apiserver and puts the label back
// rather than failing to create it again and again.
func TestChildLabelRestored(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	c := sampleCluster(ns, "relabel")
	_, push := s.bootstrapped(t, c)
	uid := push.UID
	delete(push.Labels, LabelManagedBy)
	if err := s.Client.Update(context.Background(), push); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, "label restored on the same Deployment", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, "relabel-push", &d); err != nil {
			return err
		}
		if d.UID != uid {
			return fmt.Errorf("recreated (uid changed)")
		}
		if d.Labels[LabelManagedBy] != ManagedBy {
			return fmt.Errorf("labels %v", d.Labels)
		}
		return nil
	})
	if d := s.cluster(t, ns, "relabel").GetCondition(v1alpha1.ConditionDegraded); d != nil && d.Status == metav1.ConditionTrue {
		t.Errorf("Degraded: %s", d.Message)
	}
}
