package controllers

import (
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// Unit tests of which Secrets roll which tier: no apiserver (the watch,
// the hash and the missing-Secret report are tested against one in
// test/operator, TestSecretChangesRollTheTiersThatReadThem).

func withAllSecrets(c *v1alpha1.IMCluster) {
	c.Spec.Kafka.TLS = &v1alpha1.TLSSecretRef{SecretName: "kafka-tls"}
	c.Spec.Kafka.SASL = &v1alpha1.CredentialsSecretRef{SecretName: "kafka-sasl", PasswordKey: "pw"}
	c.Spec.Cassandra.Credentials = &v1alpha1.CredentialsSecretRef{SecretName: "cass"}
	c.Spec.Etcd.TLS = &v1alpha1.TLSSecretRef{SecretName: "etcd-tls"}
}

func TestRestartSecretsPerTier(t *testing.T) {
	tests := []struct {
		name          string
		mut           func(*v1alpha1.IMCluster)
		message, push []string
	}{
		{"only the signing keys (reloaded in place)", nil, nil, nil},
		{"every Secret", withAllSecrets, []string{"cass", "etcd-tls", "kafka-sasl", "kafka-tls"}, []string{"etcd-tls"}},
		{"kafka and cassandra only", func(c *v1alpha1.IMCluster) {
			withAllSecrets(c)
			c.Spec.Etcd.TLS = nil
		}, []string{"cass", "kafka-sasl", "kafka-tls"}, nil},
		{"one Secret for everything", func(c *v1alpha1.IMCluster) {
			withAllSecrets(c)
			c.Spec.Kafka.TLS.SecretName, c.Spec.Etcd.TLS.SecretName = "tls", "tls"
			c.Spec.Kafka.SASL.SecretName, c.Spec.Cassandra.Credentials.SecretName = "tls", "tls"
		}, []string{"tls"}, []string{"tls"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(tc.mut)
			for tier, want := range map[string][]string{TierMessage: tc.message, TierPush: tc.push} {
				got := slices.Sorted(maps.Keys(tierRestartSecrets(c, tier)))
				if !slices.Equal(got, want) {
					t.Errorf("%s tier reads at start %v, want %v", tier, got, want)
				}
			}
			want := slices.Compact(slices.Sorted(slices.Values(slices.Concat(tc.message, tc.push))))
			if got := secretRefsIndex(c); !slices.Equal(got, want) {
				t.Errorf("index %v, want %v", got, want)
			}
		})
	}
}

// A credentials Secret contributes only the keys the pods project; a TLS
// Secret (mounted whole) every key.
func TestRestartSecretKeys(t *testing.T) {
	uses := tierRestartSecrets(defaulted(withAllSecrets), TierMessage)
	if u := uses["kafka-sasl"]; u.all || !maps.Equal(u.keys, map[string]bool{"username": true, "pw": true}) {
		t.Errorf("kafka-sasl use: %+v", u)
	}
	if u := uses["kafka-tls"]; !u.all {
		t.Errorf("kafka-tls use: %+v", u)
	}
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "proj"}}}},
		}}}},
		Containers: []corev1.Container{{
			Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "env"}, Key: "a", Optional: ptr.To(true)}}}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "envfrom"}}}},
		}},
	}}
	got := restartSecrets(&tmpl)
	if !got["proj"].all || !got["envfrom"].all || got["env"].all || !got["env"].keys["a"] || !got["env"].optional || got["envfrom"].optional {
		t.Errorf("uses: proj %+v, env %+v, envfrom %+v", got["proj"], got["env"], got["envfrom"])
	}
}

// Without Secrets read at start the pod template has no secret hash (an
// operator upgrade rolls nothing); with one it carries the reconcile's hash.
func TestSecretHashAnnotation(t *testing.T) {
	c := defaulted(nil)
	rd, err := renderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := renderDeployment(c, rd, TierPush).Spec.Template.Annotations[AnnotationSecretHash]; ok {
		t.Error("secret hash annotation without Secrets")
	}
	rd.secretHashes = map[string]string{TierPush: "abc"}
	d := renderDeployment(c, rd, TierPush)
	if got := d.Spec.Template.Annotations[AnnotationSecretHash]; got != "abc" {
		t.Errorf("secret hash %q", got)
	}
	msg := secretProblemsMessage([]secretProblem{
		{tier: TierMessage, secret: "etcd-tls"}, {tier: TierPush, secret: "etcd-tls"}, {tier: TierMessage, secret: "cass", key: "password"},
	})
	for _, want := range []string{`Secret "etcd-tls" not found (read by the message and push tiers at start)`, `Secret "cass" has no key "password"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
