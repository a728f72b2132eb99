package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/test/kubetest"
	"github.com/imcluster/imcluster/test/testdeps"
)

// The envtest suite: one real kube-apiserver (and etcd) and one in-process
// manager for the whole package, started by the first test that needs it;
// each test works in its own namespace.
type suite struct {
	*kubetest.APIServer
	stop func() // stops the manager, then the control plane
}

// labelUnmanaged marks an IMCluster that the suite's manager does not see
// (its cache leaves it out): a test that runs a reconciler by hand uses it,
// so that no concurrent writer makes that reconcile stop at an
// optimistic-lock conflict.
const labelUnmanaged = "test.imcluster.io/unmanaged"

var (
	suiteOnce  sync.Once
	theSuite   *suite
	suiteErr   error
	testScheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		utilruntime.Must(clientgoscheme.AddToScheme(s))
		utilruntime.Must(v1alpha1.AddToScheme(s))
		return s
	}()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theSuite != nil {
		theSuite.stop()
	}
	os.Exit(code)
}

// envSuite starts the suite once, or skips (fails under CI=true) when the
// envtest binaries are missing.
func envSuite(t *testing.T) *suite {
	t.Helper()
	assets := testdeps.KubebuilderAssets(t)
	suiteOnce.Do(func() { theSuite, suiteErr = startSuite(assets) })
	if suiteErr != nil {
		t.Fatalf("envtest: %v", suiteErr)
	}
	return theSuite
}

func startSuite(assets string) (*suite, error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel()))))
	k, err := kubetest.Start(assets, filepath.Join("..", "config", "crd", "bases"), testScheme)
	if err != nil {
		return nil, err
	}
	s := &suite{APIServer: k}
	fail := func(err error) (*suite, error) { k.Stop(); return nil, err }
	cacheOpts := CacheOptions()
	unmanaged, err := labels.NewRequirement(labelUnmanaged, selection.DoesNotExist, nil)
	if err != nil {
		return fail(err)
	}
	cacheOpts.ByObject[&v1alpha1.IMCluster{}] = cache.ByObject{Label: labels.NewSelector().Add(*unmanaged)}
	mgr, err := ctrl.NewManager(k.Config, ctrl.Options{
		Scheme:                 testScheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cacheOpts,
	})
	if err != nil {
		return fail(fmt.Errorf("while creating the manager: %w", err))
	}
	r := &IMClusterReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), Recorder: mgr.GetEventRecorder("imcluster-operator")}
	if err := r.SetupWithManager(mgr, Options{MaxConcurrentReconciles: 4}); err != nil {
		return fail(fmt.Errorf("while setting up the reconciler: %w", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	s.stop = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped with:", err)
		}
		k.Stop()
	}
	return s, nil
}

func zapLevel() int8 {
	if os.Getenv("IMC_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only: keep go test output readable
}

// namespace creates a fresh namespace for one test, with the given labels
// (key, value pairs) set at creation.
func (s *suite) namespace(t *testing.T, labels ...string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "imc-test-", Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		ns.Labels[labels[i]] = labels[i+1]
	}
	if err := s.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { _ = s.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// sampleCluster is a valid IMCluster with only the required fields.
func sampleCluster(ns, name string) *v1alpha1.IMCluster {
	return &v1alpha1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.IMClusterSpec{
			Image:     "registry.example/imcluster:v0.1.0",
			Kafka:     v1alpha1.KafkaSpec{Brokers: []string{"kafka-0.kafka:9092"}},
			Cassandra: v1alpha1.CassandraSpec{ContactPoints: []string{"cassandra-0.cassandra:9042"}},
			Etcd:      v1alpha1.EtcdSpec{Endpoints: []string{"http://etcd-0.etcd:2379"}},
			Auth:      v1alpha1.AuthSpec{SecretName: "imcluster-keys"},
		},
	}
}

var eventually = kubetest.Eventually

const waitFor = 20 * time.Second

func (s *suite) get(ns, name string, obj client.Object) error {
	return s.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
}

func (s *suite) cluster(t *testing.T, ns, name string) *v1alpha1.IMCluster {
	t.Helper()
	var c v1alpha1.IMCluster
	if err := s.get(ns, name, &c); err != nil {
		t.Fatalf("get IMCluster: %v", err)
	}
	return &c
}

// bootstrapJob waits for the cluster's current bootstrap Job.
func (s *suite) bootstrapJob(t *testing.T, ns, name string) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	eventually(t, waitFor, "bootstrap Job created", func() error {
		var jobs batchv1.JobList
		if err := s.Client.List(context.Background(), &jobs, client.InNamespace(ns), client.MatchingLabels{LabelCluster: name, LabelComponent: ComponentBoot}); err != nil {
			return err
		}
		c := s.cluster(t, ns, name)
		for i := range jobs.Items {
			if jobs.Items[i].Name == c.Status.Bootstrap.JobName && jobs.Items[i].DeletionTimestamp == nil {
				job = &jobs.Items[i]
				return nil
			}
		}
		return fmt.Errorf("%d jobs, status.bootstrap.jobName=%q", len(jobs.Items), c.Status.Bootstrap.JobName)
	})
	return job
}

// finishJob sets a Job's status as the Job controller would (no
// kube-controller-manager runs under envtest).
func (s *suite) finishJob(t *testing.T, job *batchv1.Job, succeeded bool) {
	t.Helper()
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	job.Status.StartTime = &start
	if succeeded {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now},
		}
	} else {
		job.Status.Failed = ptr.Deref(job.Spec.BackoffLimit, 0) + 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: "Job has reached the specified backoff limit", LastProbeTime: now, LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: "Job has reached the specified backoff limit", LastProbeTime: now, LastTransitionTime: now},
		}
	}
	if err := s.Client.Status().Update(context.Background(), job); err != nil {
		t.Fatalf("setting Job status: %v", err)
	}
}

// bootstrapped creates the cluster, completes its bootstrap Job and waits
// for both Deployments.
func (s *suite) bootstrapped(t *testing.T, c *v1alpha1.IMCluster) (msg, push *appsv1.Deployment) {
	t.Helper()
	if err := s.Client.Create(context.Background(), c); err != nil {
		t.Fatalf("create IMCluster: %v", err)
	}
	s.finishJob(t, s.bootstrapJob(t, c.Namespace, c.Name), true)
	eventually(t, waitFor, "bootstrap success recorded in status", func() error {
		b := s.cluster(t, c.Namespace, c.Name).Status.Bootstrap
		if !b.BootstrapDone(b.Hash) {
			return fmt.Errorf("status.bootstrap = %+v", b)
		}
		return nil
	})
	return s.deployment(t, c, TierMessage), s.deployment(t, c, TierPush)
}

func (s *suite) deployment(t *testing.T, c *v1alpha1.IMCluster, tier string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	eventually(t, waitFor, tier+" Deployment created", func() error { return s.get(c.Namespace, tierName(c, tier), &d) })
	return &d
}

// markRolledOut sets a Deployment's status to "every pod updated, ready
// and available", as the Deployment controller and kubelets would.
func (s *suite) markRolledOut(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, waitFor, "Deployment "+name+" status set", func() error {
		var d appsv1.Deployment
		if err := s.get(ns, name, &d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()},
			},
		}
		return s.Client.Status().Update(context.Background(), &d)
	})
}

// condition waits until the cluster's condition t has status want (for
// the current generation), and returns it.
func (s *suite) condition(t *testing.T, ns, name, typ string, want metav1.ConditionStatus) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, waitFor, fmt.Sprintf("condition %s=%s", typ, want), func() error {
		c := s.cluster(t, ns, name)
		cond := c.GetCondition(typ)
		if cond == nil {
			return fmt.Errorf("no %s condition", typ)
		}
		if cond.Status != want || cond.ObservedGeneration != c.Generation || c.Status.ObservedGeneration != c.Generation {
			return fmt.Errorf("%s=%s (%s: %s) at generation %d, object generation %d", typ, cond.Status, cond.Reason, cond.Message, cond.ObservedGeneration, c.Generation)
		}
		got = *cond
		return nil
	})
	return got
}

func rawMerge(patch string) client.Patch { return client.RawPatch(types.MergePatchType, []byte(patch)) }
