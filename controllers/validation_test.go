package controllers

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Invalid manifests are refused by the apiserver itself (OpenAPI schema and
// CEL rules of the generated CRD), not by the operator.
func TestInvalidManifestsRefusedByAPIServer(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	const valid = `
apiVersion: imcluster.io/v1alpha1
kind: IMCluster
metadata: {name: NAME}
spec:
  image: registry.example/imcluster:v1
  kafka: {brokers: ["k:9092"]}
  cassandra: {contactPoints: ["c:9042"]}
  etcd: {endpoints: ["http://e:2379"]}
  auth: {secretName: keys}
`
	create := func(name, manifest string) error {
		manifest = strings.ReplaceAll(manifest, "NAME", name)
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
			t.Fatalf("bad test manifest %s: %v", name, err)
		}
		u.SetNamespace(ns)
		return s.Client.Create(context.Background(), &u)
	}
	if err := create("valid", valid); err != nil {
		t.Fatalf("the valid manifest is refused: %v", err)
	}

	tests := []struct {
		name, edit, wantErr string
	}{
		{"negative-replicas", `spec: {push: {replicas: -1}}`, "spec.push.replicas"},
		{"too-many-replicas", `spec: {message: {replicas: 1001}}`, "spec.message.replicas"},
		{"zero-partitions", `spec: {kafka: {brokers: ["k:9092"], partitions: 0}}`, "spec.kafka.partitions"},
		{"no-brokers", `spec: {kafka: {brokers: []}}`, "spec.kafka.brokers"},
		{"missing-kafka", `spec: {kafka: null}`, "spec.kafka"},
		{"missing-auth-secret", `spec: {auth: {secretName: ""}}`, "spec.auth.secretName"},
		{"missing-auth", `spec: {auth: null}`, "spec.auth"},
		{"missing-image", `spec: {image: null}`, "spec.image"},
		{"tls-without-secret", `spec: {etcd: {endpoints: ["e:2379"], tls: {}}}`, "spec.etcd.tls.secretName"},
		{"autoscaling-min-over-max", `spec: {push: {autoscaling: {minReplicas: 5, maxReplicas: 3}}}`, "autoscaling.minReplicas must not exceed"},
		{"pdb-both-bounds", `spec: {push: {podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}}}`, "at most one of minAvailable"},
		{"nts-without-dcs", `spec: {cassandra: {contactPoints: ["c:9042"], replication: {strategy: NetworkTopologyStrategy}}}`, "NetworkTopologyStrategy needs dataCenters"},
		{"bad-duration", `spec: {limits: {recallWindow: "two minutes"}}`, "spec.limits.recallWindow"},
		{"sub-second-retention", `spec: {limits: {feedRetention: "1500ms"}}`, "spec.limits.feedRetention"},
		{"negative-retention", `spec: {limits: {feedRetention: "-1h"}}`, "spec.limits.feedRetention"},
		{"retention-over-20-years", `spec: {limits: {feedRetention: "175201h"}}`, "limits.feedRetention must be at most"},
		{"bad-service-type", `spec: {push: {service: {type: ExternalName}}}`, "spec.push.service.type"},
		{"webhooks-without-url", `spec: {webhooks: {secretName: hooks}}`, "webhooks needs url, beforeSend or both"},
		{"webhooks-without-secret", `spec: {webhooks: {url: "https://b/e"}}`, "spec.webhooks.secretName"},
		{"webhook-url-not-http", `spec: {webhooks: {secretName: hooks, url: "ftp://b/e"}}`, "spec.webhooks.url"},
		{"webhook-unknown-event", `spec: {webhooks: {secretName: hooks, url: "https://b/e", events: [after_everything]}}`, "spec.webhooks.events"},
		{"before-send-on-failure", `spec: {webhooks: {secretName: hooks, beforeSend: {url: "https://b/s", onFailure: maybe}}}`, "spec.webhooks.beforeSend.onFailure"},
		{"name-too-long-" + strings.Repeat("x", 30), ``, "at most 40 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mergeYAML(t, valid, tc.edit)
			err := create(tc.name, m)
			if err == nil {
				t.Fatalf("accepted:\n%s", m)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}

	// Updates: immutable fields.
	updates := []struct {
		name, patch, wantErr string
	}{
		{"partitions", `{"spec":{"kafka":{"partitions":24}}}`, "kafka.partitions is immutable"},
		{"topic", `{"spec":{"kafka":{"topic":"other"}}}`, "kafka.topic is immutable"},
		{"keyspace", `{"spec":{"cassandra":{"keyspace":"other"}}}`, "cassandra.keyspace is immutable"},
		{"partitions-by-removal", `{"spec":{"kafka":{"partitions":null}}}`, ""}, // defaulted back to 12: unchanged, allowed
	}
	for _, tc := range updates {
		t.Run("update-"+tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("imcluster.io/v1alpha1")
			u.SetKind("IMCluster")
			u.SetNamespace(ns)
			u.SetName("valid")
			err := s.Client.Patch(context.Background(), u, rawMerge(tc.patch))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted %s", tc.patch)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// mergeYAML overlays edit (a YAML object, null deletes) onto base.
func mergeYAML(t *testing.T, base, edit string) string {
	t.Helper()
	var b, e map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(edit), &e); err != nil {
		t.Fatal(err)
	}
	merge(b, e)
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, ok1 := v.(map[string]any)
		dm, ok2 := dst[k].(map[string]any)
		if ok1 && ok2 {
			merge(dm, sm)
			continue
		}
		dst[k] = v
	}
}

// The Go defaults (imcluster_defaults.go) are the CRD's: an object defaulted
// by the apiserver equals the same object defaulted by SetDefaults.
func TestGoDefaultsMatchCRDDefaults(t *testing.T) {
	s := envSuite(t)
	ns := s.namespace(t)
	for _, c := range []*v1alpha1.IMCluster{
		sampleCluster(ns, "defaults"),
		func() *v1alpha1.IMCluster {
			c := sampleCluster(ns, "defaults-refs")
			c.Spec.Kafka.SASL = &v1alpha1.CredentialsSecretRef{SecretName: "k"}
			c.Spec.Cassandra.Credentials = &v1alpha1.CredentialsSecretRef{SecretName: "c"}
			c.Spec.Push.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 9}
			c.Spec.Webhooks = &v1alpha1.WebhooksSpec{SecretName: "hooks", URL: "https://b/e",
				BeforeSend: &v1alpha1.BeforeSendWebhookSpec{URL: "https://b/s"}}
			return c
		}(),
	} {
		want := c.DeepCopy()
		want.SetDefaults()
		if err := s.Client.Create(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		got := s.cluster(t, ns, c.Name)
		if !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			gy, _ := yaml.Marshal(got.Spec)
			wy, _ := yaml.Marshal(want.Spec)
			t.Errorf("%s: apiserver defaults differ from SetDefaults:\napiserver:\n%s\nGo:\n%s", c.Name, gy, wy)
		}
	}
}
