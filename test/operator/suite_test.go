package operator

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/test/kubetest"
	"github.com/imcluster/imcluster/test/testdeps"
)

// root is the repository root, from this package's directory.
var root = func() string {
	abs, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return abs
}()

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}()

// apiserver is one envtest control plane with a kubeconfig for the real
// kubectl, helm and the manager binary.
type apiserver struct{ *kubetest.APIServer }

// startAPIServer starts a control plane for t (stopped at its cleanup);
// withCRD installs the IMCluster CRD from config/crd/bases.
func startAPIServer(t testing.TB, withCRD bool) *apiserver {
	t.Helper()
	a, err := newAPIServer(testdeps.KubebuilderAssets(t), withCRD)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

var (
	sharedOnce sync.Once
	shared     *apiserver
	sharedErr  error
)

// sharedAPIServer is one control plane (with the CRD) for the tests that
// need no fresh one; TestMain stops it.
func sharedAPIServer(t testing.TB) *apiserver {
	t.Helper()
	assets := testdeps.KubebuilderAssets(t)
	sharedOnce.Do(func() { shared, sharedErr = newAPIServer(assets, true) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

func newAPIServer(assets string, withCRD bool) (*apiserver, error) {
	crds := ""
	if withCRD {
		crds = filepath.Join(root, "config", "crd", "bases")
	}
	k, err := kubetest.Start(assets, crds, scheme)
	if err != nil {
		return nil, err
	}
	return &apiserver{k}, nil
}

// kubeconfigFor writes a kubeconfig authenticating as user (see
// kubetest.APIServer.KubeconfigFor).
func (a *apiserver) kubeconfigFor(t testing.TB, user envtest.User) string {
	t.Helper()
	kc, err := a.KubeconfigFor(user)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// run runs a binary with KUBECONFIG pointing at the apiserver (and helm's
// state in the apiserver's temporary folder).
func (a *apiserver) run(stdin, bin string, args ...string) (string, error) {
	return runCmd([]string{"KUBECONFIG=" + a.Kubeconfig, "HELM_CACHE_HOME=" + filepath.Join(a.Dir, "helm-cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(a.Dir, "helm-config"), "HELM_DATA_HOME=" + filepath.Join(a.Dir, "helm-data")},
		stdin, bin, args...)
}

// runCmd runs bin with extra environment and stdin, bounded to 2 minutes,
// and returns its combined output.
func runCmd(env []string, stdin, bin string, args ...string) (string, error) {
	return runCmdWithin(2*time.Minute, env, stdin, bin, args...)
}

// buildTimeout bounds a go build run by a test. A clean clone builds
// controller-gen (and cmd/manager) there; with a cold Go build cache, while
// the other packages' tests run, that took 2m05s on a 2-core machine
// (controller-gen, load average 10): past runCmd's bound.
const buildTimeout = 10 * time.Minute

// runCmdWithin is runCmd bounded to d.
func runCmdWithin(d time.Duration, env []string, stdin, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (a *apiserver) kubectlOK(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := a.run(stdin, a.Kubectl, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// helmBinary finds helm: $IMC_HELM (hack/deps.sh env), else PATH.
func helmBinary(t testing.TB) string {
	t.Helper()
	if h := os.Getenv("IMC_HELM"); h != "" {
		if _, err := os.Stat(h); err == nil {
			return h
		}
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	why := "helm not found in IMC_HELM or PATH (run: hack/deps.sh install helm)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("dependency missing under CI=true: %s", why)
	}
	t.Skipf("dependency missing: %s", why)
	return ""
}

var eventually = kubetest.Eventually
