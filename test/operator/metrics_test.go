package operator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// --metrics-secure: HTTPS, and only callers the apiserver authenticates
// (TokenReview) and authorizes for GET /metrics (SubjectAccessReview).
func TestSecureMetrics(t *testing.T) {
	a := startAPIServer(t, true)
	m := startManager(t, a, "--metrics-secure")
	// Two scrapers: one bound to a metrics-reader ClusterRole (as the
	// chart's), one not. The manager caches authorization decisions
	// (denials for 30 s), so each identity is set up before it asks.
	allowed, denied := saToken(t, a, "default", "prometheus"), saToken(t, a, "default", "someone")
	bindMetricsReader(t, a, "imcluster-metrics-reader", "default", "prometheus")

	url := strings.Replace(m.metrics, "http://", "https://", 1) + "/metrics"
	expectScrape(t, url, "", http.StatusUnauthorized)
	// Only now is the metrics listener known to be up (/readyz, which
	// startManager waited for, is served by another one, started at the
	// same time). Plain HTTP gets no metrics from it: Go's TLS server
	// answers a plain request with a 400 of its own.
	if resp, err := http.Get(m.metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "controller_runtime") {
			t.Errorf("plain HTTP answers HTTP %d: %.200s", resp.StatusCode, body)
		}
	}
	expectScrape(t, url, denied, http.StatusForbidden)
	expectScrape(t, url, allowed, http.StatusOK)
}

func clientset(t testing.TB, a *apiserver) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// saToken creates a ServiceAccount and returns a token of it.
func saToken(t testing.TB, a *apiserver, ns, name string) string {
	t.Helper()
	ctx, cs := context.Background(), clientset(t, a)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	return tr.Status.Token
}

// bindMetricsReader binds ClusterRole role (created here when missing)
// granting GET /metrics to ServiceAccount ns/name, and returns once the
// apiserver authorizes that ServiceAccount's scrape.
func bindMetricsReader(t testing.TB, a *apiserver, role, ns, name string) {
	t.Helper()
	ctx, cs := context.Background(), clientset(t, a)
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{}); err != nil {
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: role},
			Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver's RBAC authorizer sees the new role and binding through
	// its informers, and the manager caches a denial for 30 s (longer than
	// expectScrape waits): a scrape right after the create could be denied
	// for good. Wait until the apiserver itself allows it.
	eventually(t, 20*time.Second, "GET /metrics authorized for "+ns+"/"+name, func() error {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:                  "system:serviceaccount:" + ns + ":" + name,
				Groups:                []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !sar.Status.Allowed {
			return fmt.Errorf("not allowed (yet): %q", sar.Status.Reason)
		}
		return nil
	})
}

// expectScrape waits until GET url with the bearer token answers want.
func expectScrape(t testing.TB, url, token string, want int) {
	t.Helper()
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the manager's certificate is self-signed
	}}
	eventually(t, 20*time.Second, fmt.Sprintf("GET %s answers %d", url, want), func() error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	})
}
