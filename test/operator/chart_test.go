package operator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/test/testdeps"
)

var (
	chartDir   = filepath.Join(root, "charts", "imcluster-operator")
	fullValues = filepath.Join(root, "test", "operator", "testdata", "values-full.yaml")
)

func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for _, args := range [][]string{
		{"lint", "--strict", chartDir},
		{"lint", "--strict", chartDir, "-f", fullValues},
	} {
		out, err := runPlain(helm, args...)
		if err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// values.schema.json refuses a bad value.
	out, err := runPlain(helm, "lint", chartDir, "--set", "replicaCount=-1")
	if err == nil {
		t.Errorf("helm lint accepted replicaCount=-1:\n%s", out)
	}
}

// helm template: the kinds rendered for default and full values, the CRD
// identical to config/crd/bases and kept on uninstall, switches honoured.
func TestHelmTemplate(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name  string
		args  []string
		kinds []string
	}{
		{"default", nil, []string{"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"}},
		{"full", []string{"-f", fullValues}, []string{"ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "IMCluster", "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"}},
		{"no crds, no rbac, no sa", []string{"--set", "crds.install=false,rbac.create=false,serviceAccount.create=false,leaderElection.enabled=false,metrics.service.enabled=false"}, []string{"Deployment"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			docs := helmTemplate(t, helm, tc.args...)
			var kinds []string
			for _, d := range docs {
				kinds = append(kinds, d.GetKind())
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, tc.kinds) {
				t.Errorf("kinds = %v, want %v", kinds, tc.kinds)
			}
			for _, d := range docs {
				if d.GetKind() != "CustomResourceDefinition" {
					continue
				}
				if d.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
					t.Errorf("CRD lacks helm.sh/resource-policy: keep: %v", d.GetAnnotations())
				}
				assertSameCRD(t, d)
			}
		})
	}

	docs := helmTemplate(t, helm, "-f", fullValues)
	for _, d := range docs {
		if d.GetKind() != "Deployment" {
			continue
		}
		var dep appsv1.Deployment
		fromUnstructured(t, d, &dep)
		ctr := dep.Spec.Template.Spec.Containers[0]
		if ctr.Image != "registry.example/imcluster:v9.9.9" || *dep.Spec.Replicas != 3 {
			t.Errorf("operator Deployment: image %s, replicas %d", ctr.Image, *dep.Spec.Replicas)
		}
		for _, want := range []string{"--leader-elect=true", "--leader-election-namespace=imc-system", "--metrics-bind-address=:8443", "--metrics-secure=true", "--zap-log-level=debug", "--max-concurrent-reconciles=4"} {
			if !slices.Contains(ctr.Args, want) {
				t.Errorf("operator args %v lack %s", ctr.Args, want)
			}
		}
		if !*ctr.SecurityContext.ReadOnlyRootFilesystem || !*dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot {
			t.Error("operator is not non-root with a read-only root")
		}
	}
	if out, err := runPlain(helm, "template", "t", chartDir, "--set", "serviceMonitor.enabled=true,metrics.service.enabled=false"); err == nil {
		t.Errorf("ServiceMonitor without a metrics Service rendered:\n%s", out)
	}
}

// The rendered chart (full values: IMCluster and ServiceMonitor included)
// and the kustomize manifests apply to a real apiserver; the IMCluster
// from values passes the CRD's validation.
func TestRenderedManifestsApply(t *testing.T) {
	helm := helmBinary(t)
	a := sharedAPIServer(t)
	a.kubectlOK(t, "", "apply", "--server-side", "-f", filepath.Join(root, "test", "operator", "testdata", "servicemonitor-crd.yaml"))
	a.kubectlOK(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com")
	// Unique namespaces: the apiserver is shared with other tests (and
	// with this one under -count).
	sys, samples := testdeps.Unique("imc-system"), testdeps.Unique("imc-samples")
	sys, samples = strings.ReplaceAll(sys, "_", "-"), strings.ReplaceAll(samples, "_", "-")
	a.kubectlOK(t, "", "create", "namespace", sys)

	// Default values: a server-side dry run of the whole output.
	out, err := runPlain(helm, "template", "t", chartDir, "-n", sys)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	a.kubectlOK(t, out, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-")

	// Full values, for real: CRDs first, then the rest.
	out, err = runPlain(helm, "template", "t", chartDir, "-n", sys, "-f", fullValues)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	crds, rest := splitCRDs(t, out)
	a.kubectlOK(t, crds, "apply", "--server-side", "--force-conflicts", "-f", "-")
	a.kubectlOK(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd/imclusters.imcluster.io")
	a.kubectlOK(t, rest, "apply", "--server-side", "--force-conflicts", "-f", "-")

	var c v1alpha1.IMCluster
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: sys, Name: "chat"}, &c); err != nil {
		t.Fatalf("IMCluster from values: %v", err)
	}
	if c.Spec.Kafka.Partitions != 24 || c.Spec.Push.Autoscaling == nil || c.Spec.Push.DrainSeconds != 45 {
		t.Errorf("IMCluster spec from values: %+v", c.Spec)
	}
	if c.Spec.Message.Port != v1alpha1.DefaultMessagePort { // defaulted by the apiserver
		t.Errorf("message port not defaulted: %d", c.Spec.Message.Port)
	}
	var dep appsv1.Deployment
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: sys, Name: "t-imcluster-operator"}, &dep); err != nil {
		t.Fatalf("operator Deployment: %v", err)
	}
	// The operator's own pod passes the restricted Pod Security Standard.
	// It is tried in a namespace labelled at creation: PodSecurity
	// admission reads namespaces through an informer, so a label added by
	// an update may not be enforced yet on a pod created right after it.
	restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: strings.ReplaceAll(testdeps.Unique("imc-restricted"), "_", "-"),
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
		},
	}}
	if err := a.Client.Create(context.Background(), restricted); err != nil {
		t.Fatal(err)
	}
	tryPod := func(name string, spec corev1.PodSpec) error {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted.Name, Name: name}, Spec: spec}
		return a.Client.Create(context.Background(), pod, client.DryRunAll)
	}
	// The control: a pod that breaks the standard is refused there.
	bad := *dep.Spec.Template.Spec.DeepCopy()
	bad.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	if err := tryPod("control", bad); err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Errorf("PodSecurity admission does not enforce in %s (err=%v)", restricted.Name, err)
	}
	if err := tryPod("operator-pod", dep.Spec.Template.Spec); err != nil {
		t.Errorf("the operator pod is refused under restricted: %v", err)
	}

	// kustomize: config/default and config/samples.
	kout := a.kubectlOK(t, "", "kustomize", filepath.Join(root, "config", "default"))
	a.kubectlOK(t, kout, "apply", "--server-side", "--force-conflicts", "-f", "-")
	var sa corev1.ServiceAccount
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: "imcluster-system", Name: "imcluster-operator-controller-manager"}, &sa); err != nil {
		t.Errorf("config/default ServiceAccount: %v", err)
	}
	a.kubectlOK(t, "", "create", "namespace", samples)
	a.kubectlOK(t, "", "apply", "--server-side", "-n", samples, "-k", filepath.Join(root, "config", "samples"))
}

// A real helm install on a fresh apiserver, an upgrade, and an uninstall
// that keeps the CRD (and so every IMCluster).
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	helm := helmBinary(t)
	a := startAPIServer(t, false)
	run := func(args ...string) string {
		t.Helper()
		out, err := a.run("", helm, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := run("install", "imc", chartDir, "-n", "imc-system", "--create-namespace")
	if !strings.Contains(out, "kubectl scale imcluster/<name> --replicas=N") {
		t.Errorf("NOTES.txt not shown:\n%s", out)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := a.Client.Get(context.Background(), client.ObjectKey{Name: "imclusters.imcluster.io"}, crd); err != nil {
		t.Fatalf("CRD after install: %v", err)
	}
	a.kubectlOK(t, "", "wait", "--for=condition=Established", "--timeout=30s", "crd/imclusters.imcluster.io")
	// An IMCluster outside the release, to show uninstall keeps it.
	a.kubectlOK(t, "", "apply", "--server-side", "-n", "imc-system", "-k", filepath.Join(root, "config", "samples"))

	run("upgrade", "imc", chartDir, "-n", "imc-system", "--set", "replicaCount=1,metrics.secure=true")
	var dep appsv1.Deployment
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: "imc-system", Name: "imc-imcluster-operator"}, &dep); err != nil || *dep.Spec.Replicas != 1 {
		t.Fatalf("operator Deployment after upgrade: %v, %v", err, dep.Spec.Replicas)
	}

	// No kubelet runs the chart's pod; run the manager binary as the
	// chart's ServiceAccount, with the chart's arguments (listeners moved
	// to free local ports): the chart's RBAC must be enough to reconcile
	// and to authorize scrapers.
	var args []string
	for _, arg := range dep.Spec.Template.Spec.Containers[0].Args {
		if !strings.HasPrefix(arg, "--metrics-bind-address") && !strings.HasPrefix(arg, "--health-probe-bind-address") {
			args = append(args, arg)
		}
	}
	sa := a.kubeconfigFor(t, envtest.User{
		Name:   "system:serviceaccount:imc-system:" + dep.Spec.Template.Spec.ServiceAccountName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:imc-system", "system:authenticated"},
	})
	token := saToken(t, a, "imc-system", "prometheus")
	bindMetricsReader(t, a, "imc-imcluster-operator-metrics-reader", "imc-system", "prometheus")
	m := startManager(t, a, append(args, "--kubeconfig="+sa)...)
	waitJob(t, a, "imc-system", "chat") // the sample IMCluster is reconciled
	expectScrape(t, strings.Replace(m.metrics, "http://", "https://", 1)+"/metrics", token, http.StatusOK)
	m.stop()

	run("uninstall", "imc", "-n", "imc-system")
	if err := a.Client.Get(context.Background(), client.ObjectKey{Name: "imclusters.imcluster.io"}, crd); err != nil {
		t.Errorf("CRD removed by uninstall despite the keep policy: %v", err)
	}
	var c v1alpha1.IMCluster
	if err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: "imc-system", Name: "chat"}, &c); err != nil {
		t.Errorf("IMCluster gone after uninstall: %v", err)
	}
	eventually(t, 30*time.Second, "operator Deployment removed", func() error {
		err := a.Client.Get(context.Background(), client.ObjectKey{Namespace: "imc-system", Name: "imc-imcluster-operator"}, &dep)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// runPlain runs a binary that needs no apiserver (helm lint, template).
func runPlain(bin string, args ...string) (string, error) { return runCmd(nil, "", bin, args...) }

func helmTemplate(t *testing.T, helm string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := runPlain(helm, append([]string{"template", "t", chartDir, "-n", "imc-system"}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	return decodeAll(t, out)
}

func decodeAll(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var docs []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return docs
			}
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if len(obj) == 0 {
			continue
		}
		docs = append(docs, &unstructured.Unstructured{Object: obj})
	}
}

func splitCRDs(t *testing.T, manifests string) (crds, rest string) {
	t.Helper()
	var a, b []string
	for _, d := range decodeAll(t, manifests) {
		y, err := yaml.Marshal(d.Object)
		if err != nil {
			t.Fatal(err)
		}
		if d.GetKind() == "CustomResourceDefinition" {
			a = append(a, string(y))
		} else {
			b = append(b, string(y))
		}
	}
	return strings.Join(a, "---\n"), strings.Join(b, "---\n")
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
}

// assertSameCRD: the chart's CRD is config/crd/bases' (make manifests
// keeps them in sync; this catches a hand edit).
func assertSameCRD(t *testing.T, chart *unstructured.Unstructured) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "imcluster.io_imclusters.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want, got apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	fromUnstructured(t, chart, &got)
	if !reflect.DeepEqual(want.Spec, got.Spec) {
		t.Error("the chart's CRD differs from config/crd/bases (run make manifests)")
	}
}
