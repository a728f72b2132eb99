package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// APIServer is one envtest control plane.
type APIServer struct {
	Env        *envtest.Environment
	Config     *rest.Config
	Client     client.Client // direct, not cached: tests see the apiserver
	Kubeconfig string        // for a real kubectl, as system:masters
	Kubectl    string        // the kubectl binary beside the envtest binaries
	Dir        string        // a temporary folder, removed by Stop
}

// Start starts a control plane from the envtest binaries in assets; crdDir
// (if not "") is a folder of CRDs to install, which must exist. The client
// uses scheme.
func Start(assets, crdDir string, scheme *runtime.Scheme) (*APIServer, error) {
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	// envtest's default Service range is a /24: no controller deletes what a
	// test leaves in its namespace, so a package's ClusterIP Services pile
	// up over a -count run until creating one fails with "range is full".
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	// envtest gives kube-apiserver 20 s to become ready per attempt; on a
	// shared box under load (2 cores, several engineers' builds and
	// tests) it took longer, and every test of the package failed at
	// start. KUBEBUILDER_CONTROLPLANE_START_TIMEOUT still overrides.
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		env.ControlPlaneStartTimeout = 2 * time.Minute
	}
	if crdDir != "" {
		env.CRDInstallOptions = envtest.CRDInstallOptions{Paths: []string{crdDir}, ErrorIfPathMissing: true}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("while starting envtest: %w", err)
	}
	a := &APIServer{Env: env, Config: cfg, Kubectl: filepath.Join(assets, "kubectl")}
	fail := func(err error) (*APIServer, error) { a.Stop(); return nil, err }
	if a.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return fail(fmt.Errorf("while creating a client: %w", err))
	}
	if a.Dir, err = os.MkdirTemp("", "imcluster-envtest-"); err != nil {
		return fail(err)
	}
	if a.Kubeconfig, err = a.KubeconfigFor(envtest.User{Name: "admin", Groups: []string{"system:masters"}}); err != nil {
		return fail(err)
	}
	return a, nil
}

// KubeconfigFor adds user to the control plane and writes a kubeconfig
// authenticating as it (a client certificate; RBAC then applies to that
// user name and groups) to a new file in Dir, whose path it returns.
func (a *APIServer) KubeconfigFor(user envtest.User) (string, error) {
	u, err := a.Env.ControlPlane.AddUser(user, nil)
	if err != nil {
		return "", fmt.Errorf("while adding user %s: %w", user.Name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("while rendering a kubeconfig for %s: %w", user.Name, err)
	}
	f, err := os.CreateTemp(a.Dir, "kubeconfig-*")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(kc); err != nil {
		return "", fmt.Errorf("while writing a kubeconfig: %w", err)
	}
	return f.Name(), nil
}

// Stop stops the control plane and removes its temporary folder.
func (a *APIServer) Stop() {
	_ = a.Env.Stop()
	if a.Dir != "" {
		_ = os.RemoveAll(a.Dir)
	}
}

// Eventually retries check every 25ms until it returns nil, or fails t
// with its last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
