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
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(fmt.Errorf("while adding a kubectl user: %w", err))
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(fmt.Errorf("while rendering a kubeconfig: %w", err))
	}
	if a.Dir, err = os.MkdirTemp("", "imcluster-envtest-"); err != nil {
		return fail(err)
	}
	a.Kubeconfig = filepath.Join(a.Dir, "kubeconfig")
	if err := os.WriteFile(a.Kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	return a, nil
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
