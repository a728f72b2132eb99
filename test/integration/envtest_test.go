package integration

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imcluster/imcluster/test/testdeps"
)

func TestEnvtestRealAPIServer(t *testing.T) {
	assets := testdeps.KubebuilderAssets(t)
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "it-ns"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	labels := map[string]string{"app": "it"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "it-deploy", Namespace: ns.Name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example/it:1"}}},
			},
		},
	}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	var got appsv1.Deployment
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: dep.Name}, &got); err != nil {
		t.Fatalf("get deployment: %v", err)
	}
	if *got.Spec.Replicas != 2 || got.Spec.Template.Spec.Containers[0].Image != "example/it:1" || got.UID == "" {
		t.Fatalf("deployment read back wrong: replicas=%d image=%s uid=%q",
			*got.Spec.Replicas, got.Spec.Template.Spec.Containers[0].Image, got.UID)
	}
	var gotNS corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: ns.Name}, &gotNS); err != nil {
		t.Fatalf("get namespace: %v", err)
	}
}
