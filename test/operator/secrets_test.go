package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

const (
	secretHashAnnotation = "imcluster.io/secret-hash"
	configHashAnnotation = "imcluster.io/config-hash"
)

// Secrets the tiers read at start roll the tiers that read them when their
// data changes; the signing keys (reloaded in place), a key of a Secret the
// pods do not project, a label, and someone else's Secret roll nothing
// (the Deployments are not written at all); a deleted Secret is reported,
// and its return rolls the tier. The manager runs as its ServiceAccount
// with the generated RBAC (read-only on Secrets).
func TestSecretChangesRollTheTiersThatReadThem(t *testing.T) {
	a := startDeployedOperator(t)
	ctx := context.Background()
	ns := newNamespace(t, a)

	secrets := map[string]map[string]string{
		"keys":       {"user.key": strings.Repeat("u", 64), "service.key": strings.Repeat("s", 64), "internal.key": strings.Repeat("i", 64)},
		"kafka-tls":  {"ca.crt": "ca-1", "tls.crt": "crt-1", "tls.key": "key-1"},
		"kafka-sasl": {"username": "im", "password": "p-1", "note": "not mounted"},
		"cass-creds": {"username": "im", "password": "c-1"},
		"etcd-tls":   {"ca.crt": "eca-1", "tls.crt": "ecrt-1", "tls.key": "ekey-1"},
		"unrelated":  {"x": "1"},
	}
	for name, data := range secrets {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
		if err := a.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	c := &v1alpha1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sec"},
		Spec: v1alpha1.IMClusterSpec{
			Image: "registry.example/imcluster:v0.1.0",
			Kafka: v1alpha1.KafkaSpec{Brokers: []string{"kafka:9092"},
				TLS:  &v1alpha1.TLSSecretRef{SecretName: "kafka-tls"},
				SASL: &v1alpha1.CredentialsSecretRef{SecretName: "kafka-sasl"}},
			Cassandra: v1alpha1.CassandraSpec{ContactPoints: []string{"cassandra:9042"},
				Credentials: &v1alpha1.CredentialsSecretRef{SecretName: "cass-creds"}},
			Etcd: v1alpha1.EtcdSpec{Endpoints: []string{"https://etcd:2379"},
				TLS: &v1alpha1.TLSSecretRef{SecretName: "etcd-tls"}},
			Auth: v1alpha1.AuthSpec{SecretName: "keys"},
		},
	}
	if err := a.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	completeJob(t, a, waitJob(t, a, ns, "sec"))
	waitDeployments(t, a, ns, "sec")

	deployment := func(tier string) *appsv1.Deployment {
		t.Helper()
		var d appsv1.Deployment
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sec-" + tier}, &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	// settle makes the operator reconcile once more (a PDB change, which
	// rolls nothing) and waits for it to end. That reconcile reads the
	// Secrets after every change made so far, so a Deployment that it
	// leaves untouched is one the operator does not want changed.
	pdb := 1
	settle := func() {
		t.Helper()
		pdb++
		patch := fmt.Sprintf(`{"spec":{"push":{"podDisruptionBudget":{"maxUnavailable":%d}}}}`, pdb)
		if err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sec"}},
			client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "reconcile of the PDB change", func() error {
			var p policyv1.PodDisruptionBudget
			if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sec-push"}, &p); err != nil {
				return err
			}
			if mu := p.Spec.MaxUnavailable; mu == nil || mu.IntValue() != pdb {
				return fmt.Errorf("push PDB maxUnavailable %v, want %d", mu, pdb)
			}
			return nil
		})
		waitReconciled(t, a, ns, "sec") // the tiers come after the PDB
	}
	settle()
	before := map[string]*appsv1.Deployment{"message": deployment("message"), "push": deployment("push")}
	for tier, d := range before {
		if d.Spec.Template.Annotations[secretHashAnnotation] == "" {
			t.Fatalf("%s pod template lacks %s: %v", tier, secretHashAnnotation, d.Spec.Template.Annotations)
		}
	}

	setData := func(name, key, value string) func() {
		return func() {
			var s corev1.Secret
			if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
				t.Fatal(err)
			}
			s.Data[key] = []byte(value)
			if err := a.Client.Update(ctx, &s); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		change func()
		rolls  []string // tiers whose secret hash must change; the others are not written
	}{
		{"kafka SASL password", setData("kafka-sasl", "password", "p-2"), []string{"message"}},
		{"kafka TLS certificate", setData("kafka-tls", "tls.crt", "crt-2"), []string{"message"}},
		{"cassandra password", setData("cass-creds", "password", "c-2"), []string{"message"}},
		{"etcd TLS key", setData("etcd-tls", "tls.key", "ekey-2"), []string{"message", "push"}},
		{"user signing key (reloaded in place)", setData("keys", "user.key", strings.Repeat("v", 64)), nil},
		{"internal signing key (reloaded in place)", setData("keys", "internal.key", strings.Repeat("j", 64)), nil},
		{"a key the pods do not mount", setData("kafka-sasl", "note", "still not mounted"), nil},
		{"an unrelated Secret", setData("unrelated", "x", "2"), nil},
		{"a label of a referenced Secret", func() {
			var s corev1.Secret
			if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cass-creds"}, &s); err != nil {
				t.Fatal(err)
			}
			s.Labels = map[string]string{"team": "data"}
			if err := a.Client.Update(ctx, &s); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			for _, tier := range tc.rolls {
				eventually(t, 30*time.Second, tier+" secret hash changes", func() error {
					d := deployment(tier)
					if got, was := d.Spec.Template.Annotations[secretHashAnnotation], before[tier].Spec.Template.Annotations[secretHashAnnotation]; got == was {
						return fmt.Errorf("%s still %s", secretHashAnnotation, got)
					}
					return nil
				})
			}
			settle()
			for _, tier := range []string{"message", "push"} {
				d, was := deployment(tier), before[tier]
				rolled := false
				for _, r := range tc.rolls {
					rolled = rolled || r == tier
				}
				if !rolled && (d.ResourceVersion != was.ResourceVersion || d.Generation != was.Generation) {
					t.Errorf("%s Deployment written (resourceVersion %s -> %s, generation %d -> %d; template annotations %v -> %v)",
						tier, was.ResourceVersion, d.ResourceVersion, was.Generation, d.Generation,
						was.Spec.Template.Annotations, d.Spec.Template.Annotations)
				}
				if d.Spec.Template.Annotations[configHashAnnotation] != was.Spec.Template.Annotations[configHashAnnotation] {
					t.Errorf("%s config hash changed with a Secret", tier)
				}
				before[tier] = d
			}
		})
	}

	// A referenced Secret deleted: Degraded says which, an event too, and
	// the tier that reads it is left as it is (its new pods could not
	// start); the other tier is not touched either.
	if err := a.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cass-creds"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "Degraded=True, SecretMissing", func() error {
		var got v1alpha1.IMCluster
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sec"}, &got); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionDegraded)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.ReasonSecretMissing {
			return fmt.Errorf("Degraded: %+v", cond)
		}
		if !strings.Contains(cond.Message, `"cass-creds"`) || !strings.Contains(cond.Message, "message tier") {
			return fmt.Errorf("Degraded message %q does not name the Secret and the tier", cond.Message)
		}
		return nil
	})
	eventually(t, 30*time.Second, "a Degraded event naming the Secret", func() error {
		evs, err := eventsAbout(ctx, a, ns, "sec")
		if err != nil {
			return err
		}
		for _, e := range evs {
			if strings.HasPrefix(e, "Degraded: SecretMissing") && strings.Contains(e, "cass-creds") {
				return nil
			}
		}
		return fmt.Errorf("events %q", evs)
	})
	// A spec change meanwhile: applied to the push tier, not to the
	// message tier that waits for its Secret.
	patch := `{"spec":{"push":{"heartbeatInterval":"20s"},"limits":{"maxMessageBytes":4096}}}`
	if err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sec"}},
		client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "push tier follows the spec", func() error {
		if d := deployment("push"); d.Spec.Template.Annotations[configHashAnnotation] == before["push"].Spec.Template.Annotations[configHashAnnotation] {
			return fmt.Errorf("push config hash unchanged")
		}
		return nil
	})
	settle()
	if d := deployment("message"); d.ResourceVersion != before["message"].ResourceVersion {
		t.Errorf("message Deployment written while its Secret is missing: template annotations %v", d.Spec.Template.Annotations)
	}

	// The Secret back (new content): the message tier catches up, rolls,
	// and Degraded clears.
	back := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cass-creds"}, StringData: map[string]string{"username": "im", "password": "c-3"}}
	if err := a.Client.Create(ctx, back); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "message tier rolls with the returned Secret and the new spec", func() error {
		d, was := deployment("message"), before["message"]
		if d.Spec.Template.Annotations[secretHashAnnotation] == was.Spec.Template.Annotations[secretHashAnnotation] ||
			d.Spec.Template.Annotations[configHashAnnotation] == was.Spec.Template.Annotations[configHashAnnotation] {
			return fmt.Errorf("template annotations %v", d.Spec.Template.Annotations)
		}
		return nil
	})
	eventually(t, 30*time.Second, "Degraded=False", func() error {
		var got v1alpha1.IMCluster
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sec"}, &got); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionDegraded); cond == nil || cond.Status != metav1.ConditionFalse {
			return fmt.Errorf("Degraded: %+v", cond)
		}
		return nil
	})
}

// eventsAbout lists the events about IMCluster name (reason and note).
func eventsAbout(ctx context.Context, a *apiserver, ns, name string) ([]string, error) {
	var evs eventsv1.EventList
	if err := a.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "IMCluster" && e.Regarding.Name == name {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	return out, nil
}
