package operator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/test/testdeps"
)

const leaseName = "imcluster-operator.imcluster.io"

var (
	buildOnce  sync.Once
	managerBin string
	buildErr   error
)

// managerBinary builds cmd/manager once per test binary.
func managerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imcluster-manager-bin-")
		if err != nil {
			buildErr = err
			return
		}
		managerBin = filepath.Join(dir, "manager")
		out, err := runCmdWithin(buildTimeout, nil, "", "go", "build", "-o", managerBin, "github.com/imcluster/imcluster/cmd/manager")
		if err != nil {
			buildErr = fmt.Errorf("go build cmd/manager: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return managerBin
}

// manager is a running cmd/manager process.
type manager struct {
	cmd             *exec.Cmd
	metrics, probes string // base URLs
	exited          chan struct{}
	log             *os.File
}

// startDeployedOperator starts an apiserver with config/default applied
// (CRD, RBAC, namespace) and the manager running as its ServiceAccount, so
// the generated RBAC is what the test exercises.
func startDeployedOperator(t testing.TB) *apiserver {
	t.Helper()
	a := startAPIServer(t, false)
	a.kubectlOK(t, a.kubectlOK(t, "", "kustomize", filepath.Join(root, "config", "default")), "apply", "--server-side", "-f", "-")
	a.kubectlOK(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd/imclusters.imcluster.io")
	sa := a.kubeconfigFor(t, envtest.User{
		Name:   "system:serviceaccount:imcluster-system:imcluster-operator-controller-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:imcluster-system", "system:authenticated"},
	})
	startManager(t, a, "--kubeconfig="+sa, "--leader-election-namespace=imcluster-system")
	return a
}

// startManager runs the manager binary against a, with leader election in
// namespace default; it is stopped (SIGTERM) at t's cleanup.
func startManager(t testing.TB, a *apiserver, extra ...string) *manager {
	t.Helper()
	bin := managerBinary(t)
	// Ports below the ephemeral range (testdeps.FreeAddr): one that
	// listening on :0 gives could become the local port of some outgoing
	// connection while the manager starts, which then exits (address in use).
	metrics, probes := testdeps.FreeAddr(t), testdeps.FreeAddr(t)
	for probes == metrics {
		probes = testdeps.FreeAddr(t)
	}
	m := &manager{metrics: "http://" + metrics, probes: "http://" + probes, exited: make(chan struct{})}
	var err error
	if m.log, err = os.CreateTemp("", "imcluster-manager-*.log"); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--kubeconfig=" + a.Kubeconfig,
		"--leader-elect", "--leader-election-namespace=default",
		"--metrics-bind-address=" + strings.TrimPrefix(m.metrics, "http://"),
		"--health-probe-bind-address=" + strings.TrimPrefix(m.probes, "http://"),
	}, extra...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting the manager: %v", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			b, _ := os.ReadFile(m.log.Name())
			t.Logf("manager log (last 3000 bytes):\n%s", tail(string(b), 3000))
		}
		_ = os.Remove(m.log.Name())
	})
	eventually(t, 30*time.Second, "manager /readyz", func() error { return httpOK(m.probes + "/readyz") })
	return m
}

func (m *manager) stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

func (m *manager) scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(m.metrics + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func leaseHolder(a *apiserver, ns string) string {
	var l coordinationv1.Lease
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: leaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// The manager binary, installed from config/default and running with only
// the generated RBAC (as its ServiceAccount, not as an admin): health,
// leader election with hand-over on SIGTERM, reconciling an IMCluster,
// metrics.
func TestManagerBinary(t *testing.T) {
	a := startAPIServer(t, false)
	a.kubectlOK(t, a.kubectlOK(t, "", "kustomize", filepath.Join(root, "config", "default")), "apply", "--server-side", "-f", "-")
	a.kubectlOK(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd/imclusters.imcluster.io")
	const leaseNS = "imcluster-system"
	sa := a.kubeconfigFor(t, envtest.User{
		Name:   "system:serviceaccount:imcluster-system:imcluster-operator-controller-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:imcluster-system", "system:authenticated"},
	})
	asSA := []string{"--kubeconfig=" + sa, "--leader-election-namespace=" + leaseNS}
	first := startManager(t, a, asSA...)
	var holder string
	eventually(t, 30*time.Second, "leader elected", func() error {
		if holder = leaseHolder(a, leaseNS); holder == "" {
			return fmt.Errorf("no Lease holder")
		}
		return nil
	})
	if err := httpOK(first.probes + "/healthz"); err != nil {
		t.Errorf("healthz: %v", err)
	}

	ns := newNamespace(t, a)
	createCluster(t, a, ns, "bin")
	job := waitJob(t, a, ns, "bin")
	completeJob(t, a, job)
	waitDeployments(t, a, ns, "bin")
	// The manager counts a create once the apiserver has answered it, so the
	// second Deployment can be visible here a moment before it is counted.
	eventually(t, 30*time.Second, "metrics of the reconcile", func() error {
		metrics := first.scrape(t)
		for _, want := range []string{
			`imcluster_operator_child_writes_total{kind="Deployment",op="create"} 2`,
			`controller_runtime_reconcile_total{controller="imcluster",result="success"}`,
			"imcluster_operator_status_patches_total",
		} {
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})

	// A second replica waits; SIGTERM to the leader hands over (the Lease
	// is released on shutdown).
	second := startManager(t, a, asSA...)
	if h := leaseHolder(a, leaseNS); h != holder {
		t.Fatalf("the second replica took the Lease from a live leader: %q -> %q", holder, h)
	}
	stopped := time.Now()
	first.stop()
	eventually(t, 30*time.Second, "second replica leads", func() error {
		if h := leaseHolder(a, leaseNS); h == "" || h == holder {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	t.Logf("leader hand-over after SIGTERM: %v", time.Since(stopped).Round(time.Millisecond))
	// And reconciles: scale the push tier through the CR.
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"push":{"replicas":3}}}`))
	c := &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bin"}}
	if err := a.Client.Patch(context.Background(), c, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "new leader reconciles", func() error {
		var d appsv1.Deployment
		if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "bin-push"}, &d); err != nil {
			return err
		}
		if *d.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %d", *d.Spec.Replicas)
		}
		return nil
	})
	_ = second
}

func newNamespace(t testing.TB, a *apiserver) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "imc-"}}
	if err := a.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// minimalSpec is a valid IMCluster spec with only the required fields; its
// auth Secret is "keys".
func minimalSpec() v1alpha1.IMClusterSpec {
	return v1alpha1.IMClusterSpec{
		Image:     "registry.example/imcluster:v0.1.0",
		Kafka:     v1alpha1.KafkaSpec{Brokers: []string{"kafka:9092"}},
		Cassandra: v1alpha1.CassandraSpec{ContactPoints: []string{"cassandra:9042"}},
		Etcd:      v1alpha1.EtcdSpec{Endpoints: []string{"http://etcd:2379"}},
		Auth:      v1alpha1.AuthSpec{SecretName: "keys"},
	}
}

func createCluster(t testing.TB, a *apiserver, ns, name string) {
	t.Helper()
	c := &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: minimalSpec()}
	if err := a.Client.Create(context.Background(), c); err != nil {
		t.Fatalf("create IMCluster: %v", err)
	}
}

func waitJob(t testing.TB, a *apiserver, ns, name string) *batchv1.Job {
	t.Helper()
	var job batchv1.Job
	eventually(t, 60*time.Second, "bootstrap Job of "+name, func() error {
		var jobs batchv1.JobList
		if err := a.Client.List(context.Background(), &jobs, client.InNamespace(ns), client.MatchingLabels{"imcluster.io/cluster": name}); err != nil {
			return err
		}
		if len(jobs.Items) == 0 {
			return fmt.Errorf("no Job yet")
		}
		job = jobs.Items[0]
		return nil
	})
	return &job
}

// completeJob marks a Job succeeded, as the Job controller would.
func completeJob(t testing.TB, a *apiserver, job *batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	job.Status = batchv1.JobStatus{
		StartTime: &start, CompletionTime: &now, Succeeded: 1,
		Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, LastProbeTime: now, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, LastProbeTime: now, LastTransitionTime: now},
		},
	}
	if err := a.Client.Status().Update(context.Background(), job); err != nil {
		t.Fatalf("completing Job %s: %v", job.Name, err)
	}
}

func waitDeployments(t testing.TB, a *apiserver, ns, name string) {
	t.Helper()
	for _, tier := range []string{"message", "push"} {
		eventually(t, 60*time.Second, name+" "+tier+" Deployment", func() error {
			return a.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-" + tier}, &appsv1.Deployment{})
		})
	}
}

// waitReconciled waits until the operator has reported the cluster's
// current generation in its status. That status patch ends a reconcile,
// after every child is written; a child written on the way (the PDBs come
// before the tiers) shows only that the reconcile has begun.
func waitReconciled(t testing.TB, a *apiserver, ns, name string) {
	t.Helper()
	eventually(t, 30*time.Second, name+" reconciled at its generation", func() error {
		var c v1alpha1.IMCluster
		if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
			return err
		}
		if c.Status.ObservedGeneration != c.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", c.Status.ObservedGeneration, c.Generation)
		}
		return nil
	})
}
