package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/controllers"
)

// LeaderElectionID names the Lease the replicas compete for.
const LeaderElectionID = "imcluster-operator.imcluster.io"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, leaderNS string
		leaderElect, secureMetrics       bool
		concurrency                      int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&secureMetrics, "metrics-secure", false, "serve metrics over HTTPS to callers the apiserver authenticates and authorizes (TokenReview, SubjectAccessReview for GET /metrics)")
	flag.BoolVar(&leaderElect, "leader-elect", true, "elect a leader so that only one replica reconciles")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader Lease (default: the pod's namespace)")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 2, "IMCluster objects reconciled in parallel")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("while loading the kubeconfig: %w", err)
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics}
	if secureMetrics {
		// A self-signed certificate, generated at start; Prometheus
		// scrapes with its ServiceAccount token (see the chart's
		// ServiceMonitor), authorized for GET /metrics.
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  probeAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: leaderNS,
		// The new leader waits for the old one's Lease to expire, so the
		// old one must stop reconciling as soon as it steps down.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(),
	})
	if err != nil {
		return fmt.Errorf("while creating the manager: %w", err)
	}
	r := &controllers.IMClusterReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  mgr.GetEventRecorder("imcluster-operator"),
	}
	if err := r.SetupWithManager(mgr, controllers.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		return fmt.Errorf("while setting up the IMCluster controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("while adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("while adding the readiness check: %w", err)
	}
	ctrl.Log.WithName("manager").Info("starting", "metrics", metricsAddr, "probes", probeAddr, "leaderElection", leaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("while running the manager: %w", err)
	}
	return nil
}
