package operator

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// The operator figures of docs/benchmarks.md. They run only with
// IMC_OPERATOR_BENCH=1 (they take a minute or two and load both cores):
//
//	IMC_OPERATOR_BENCH=1 IMC_BENCH_CHANGES=300 go test ./test/operator/ -run 'TestBench' -v -count=1
//
// Both run the real manager binary (cmd/manager) as a process against a
// fresh envtest apiserver, as in production but without kubelets.

func benchEnabled(t *testing.T) {
	if os.Getenv("IMC_OPERATOR_BENCH") != "1" {
		t.Skip("set IMC_OPERATOR_BENCH=1 to measure the operator")
	}
}

// Reconcile latency: from a spec change (the PATCH returning) to the
// message Deployment updated as seen by a watch. Each change sets both the
// replica count and a configuration value, so the ConfigMap and the
// Deployment (replicas and the config-hash of its template) are rewritten.
func TestBenchReconcileLatency(t *testing.T) {
	benchEnabled(t)
	changes := envInt("IMC_BENCH_CHANGES", 300)
	a := startAPIServer(t, true)
	m := startManager(t, a)
	ns := newNamespace(t, a)
	createCluster(t, a, ns, "lat")
	completeJob(t, a, waitJob(t, a, ns, "lat"))
	waitDeployments(t, a, ns, "lat")

	wc, err := client.NewWithWatch(a.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var list appsv1.DeploymentList
	if err := wc.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &appsv1.DeploymentList{}, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", "lat-message")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	lat := make([]time.Duration, 0, changes)
	cluster := &v1alpha1.IMCluster{}
	cluster.Namespace, cluster.Name = ns, "lat"
	lastHash := ""
	for i := range changes {
		replicas := int32(1 + i%7)
		patch := fmt.Sprintf(`{"spec":{"message":{"replicas":%d},"limits":{"maxMessageBytes":%d}}}`, replicas, 1000+i)
		start := time.Now()
		if err := a.Client.Patch(ctx, cluster, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatal("watch closed")
				}
				if ev.Type != watch.Modified && ev.Type != watch.Added {
					continue
				}
				d := ev.Object.(*appsv1.Deployment)
				h := d.Spec.Template.Annotations["imcluster.io/config-hash"]
				if *d.Spec.Replicas == replicas && h != lastHash {
					lastHash = h
					lat = append(lat, time.Since(start))
					break wait
				}
			case <-deadline:
				t.Fatalf("change %d not applied within 10s", i)
			}
		}
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(100 * time.Microsecond) }
	rss, hwm := procMemory(t, m.cmd.Process.Pid)
	t.Logf("RESULT reconcile latency over %d spec changes: p50 %v, p90 %v, p99 %v, max %v (manager RSS %s, peak %s; %d cores, %s)",
		len(lat), p(0.50), p(0.90), p(0.99), lat[len(lat)-1], mib(rss), mib(hwm), runtime.NumCPU(), time.Now().UTC().Format(time.DateOnly))
	if p(0.99) > time.Second {
		t.Errorf("p99 %v exceeds the 1 s target", p(0.99))
	}
}

// Memory with 100 IMCluster objects (each bootstrapped, so 9 children
// each are created and cached), in 10 namespaces.
func TestBenchMemory100(t *testing.T) {
	benchEnabled(t)
	n := envInt("IMC_BENCH_CLUSTERS", 100)
	a := startAPIServer(t, true)
	m := startManager(t, a)
	rss0, _ := procMemory(t, m.cmd.Process.Pid)

	start := time.Now()
	nss := make([]string, 10)
	for i := range nss {
		nss[i] = newNamespace(t, a)
	}
	for i := range n {
		createCluster(t, a, nss[i%10], fmt.Sprintf("c%03d", i))
	}
	for i := range n {
		completeJob(t, a, waitJob(t, a, nss[i%10], fmt.Sprintf("c%03d", i)))
	}
	for i := range n {
		waitDeployments(t, a, nss[i%10], fmt.Sprintf("c%03d", i))
	}
	took := time.Since(start)
	// Let the status patches settle, then sample.
	waitSettled(t, a, m, n)
	rss, hwm := procMemory(t, m.cmd.Process.Pid)
	heap := metricValue(m.scrape(t), "go_memstats_heap_inuse_bytes")
	writes := metricValue(m.scrape(t), `imcluster_operator_child_writes_total{kind="Deployment",op="create"}`)
	t.Logf("RESULT %d IMClusters (%.0f Deployments created) fully reconciled in %v; manager RSS %s (idle before: %s, peak %s), Go heap in use %s",
		n, writes, took.Round(time.Millisecond), mib(rss), mib(rss0), mib(hwm), mib(int64(heap)))
}

// waitSettled waits until the operator has reported all n IMClusters with
// both their Deployments (status at the current generation, Progressing
// because the tiers roll out — no kubelet makes them ready — and not
// because a Deployment is missing) and its work queue is empty with no
// reconcile running.
func waitSettled(t *testing.T, a *apiserver, m *manager, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, "every IMCluster's status shows its Deployments, operator idle", func() error {
		var list v1alpha1.IMClusterList
		if err := a.Client.List(context.Background(), &list); err != nil {
			return err
		}
		settled := 0
		for _, c := range list.Items {
			p := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionProgressing)
			if c.Status.ObservedGeneration == c.Generation && p != nil && p.ObservedGeneration == c.Generation &&
				p.Reason == v1alpha1.ReasonRollingOut && !strings.Contains(p.Message, "not created yet") {
				settled++
			}
		}
		if settled < n {
			return fmt.Errorf("%d of %d IMClusters report both Deployments", settled, n)
		}
		metrics := m.scrape(t)
		for _, name := range []string{"workqueue_depth", "controller_runtime_active_workers"} {
			if v := metricSum(metrics, name, `"imcluster"`); v != 0 {
				return fmt.Errorf("operator not idle: %s %v", name, v)
			}
		}
		return nil
	})
}

// metricSum adds up the samples of metric name whose labels contain
// label (e.g. `"imcluster"`); -1 when there is none.
func metricSum(metrics, name, label string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\}\s+(\S+)$`)
	sum, found := 0.0, false
	for _, m := range re.FindAllStringSubmatch(metrics, -1) {
		if !strings.Contains(m[1], label) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return -1
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// procMemory reads VmRSS and VmHWM (bytes) of a process.
func procMemory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			hwm = kb * 1024
		}
	}
	return rss, hwm
}

func metricValue(metrics, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+(\S+)$`)
	m := re.FindStringSubmatch(metrics)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
