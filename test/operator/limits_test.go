package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// spec.limits.feedRetention is rendered as IM_FEED_RETENTION into the
// ConfigMap the message pods read (default 720h when unset, "0" as "keep
// forever"), and what the service loads from it is the retention asked
// for. Negative, sub-second, fractional, unit-less and over-20-years
// values are refused by the apiserver, on create and on update. A change
// rolls the message pods (config-hash) and nothing else: the push
// Deployment is not written and the bootstrap Job is not rerun.
func TestFeedRetention(t *testing.T) {
	a := startDeployedOperator(t)
	ctx := context.Background()
	ns := newNamespace(t, a)
	createAuthKeys(t, a, ns)
	cluster := func(name, retention string) *v1alpha1.IMCluster {
		spec := minimalSpec()
		spec.Limits.FeedRetention = retention
		return &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	}

	invalid := []string{"-1h", "-0s", "500ms", "1.5s", "1h0.5s", "1500us", "30d", "60", "forever", "1h 2m", "175200h1s", "200000h", "99999999999999999999h"}
	for i, v := range invalid {
		t.Run("refused/"+v, func(t *testing.T) {
			err := a.Client.Create(ctx, cluster(fmt.Sprintf("bad-%d", i), v))
			if err == nil {
				t.Fatalf("feedRetention %q accepted", v)
			}
			if !strings.Contains(err.Error(), "feedRetention") {
				t.Errorf("error %q does not mention feedRetention", err)
			}
		})
	}

	tests := []struct {
		name, retention string
		wantSpec        string        // after the apiserver's defaulting
		wantEnv         string        // IM_FEED_RETENTION in the ConfigMap
		wantLoaded      time.Duration // config.LoadMessage of the ConfigMap
	}{
		{"unset", "", "720h", "720h0m0s", config.DefaultFeedRetention},
		{"forever", "0", "0", "0", config.FeedRetentionForever},
		{"zero-seconds", "0s", "0s", "0", config.FeedRetentionForever},
		{"days", "36h", "36h", "36h0m0s", 36 * time.Hour},
		{"mixed", "1h30m15s", "1h30m15s", "1h30m15s", time.Hour + 30*time.Minute + 15*time.Second},
		{"one-second", "1s", "1s", "1s", time.Second},
		{"max", "175200h", "175200h", "175200h0m0s", config.MaxFeedRetention},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(tc.name, tc.retention)
			if err := a.Client.Create(ctx, c); err != nil {
				t.Fatalf("feedRetention %q refused: %v", tc.retention, err)
			}
			if got := c.Spec.Limits.FeedRetention; got != tc.wantSpec {
				t.Errorf("spec.limits.feedRetention %q after defaulting, want %q", got, tc.wantSpec)
			}
			data, m := renderedMessageConfig(t, a, ns, tc.name)
			if got, ok := data[config.EnvFeedRetention]; !ok || got != tc.wantEnv {
				t.Fatalf("%s = %q (set: %v), want %q", config.EnvFeedRetention, got, ok, tc.wantEnv)
			}
			if m.FeedRetention != tc.wantLoaded {
				t.Errorf("the message tier loads FeedRetention %v, want %v", m.FeedRetention, tc.wantLoaded)
			}
		})
	}

	// Updates: validated like creates; a change rolls message pods only.
	const name = "days"
	completeJob(t, a, waitJob(t, a, ns, name))
	waitDeployments(t, a, ns, name)
	for _, v := range []string{"-5s", "250ms", "175201h"} {
		patch := fmt.Sprintf(`{"spec":{"limits":{"feedRetention":%q}}}`, v)
		err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
			client.RawPatch("application/merge-patch+json", []byte(patch)))
		if err == nil || !strings.Contains(err.Error(), "feedRetention") {
			t.Errorf("update to feedRetention %q: err=%v, want a validation error", v, err)
		}
	}
	deployment := func(tier string) *appsv1.Deployment {
		t.Helper()
		var d appsv1.Deployment
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-" + tier}, &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	jobs := func() []string {
		t.Helper()
		var l batchv1.JobList
		if err := a.Client.List(ctx, &l, client.InNamespace(ns), client.MatchingLabels{"imcluster.io/cluster": name}); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, j := range l.Items {
			names = append(names, j.Name)
		}
		return names
	}
	msgBefore, pushBefore, jobsBefore := deployment("message"), deployment("push"), jobs()
	if msgBefore.Spec.Template.Annotations[configHashAnnotation] == "" {
		t.Fatalf("message pod template lacks %s", configHashAnnotation)
	}
	// The retention change, then a PDB change (rolls nothing) to know that
	// the operator has reconciled after it.
	patch := `{"spec":{"limits":{"feedRetention":"48h"},"push":{"podDisruptionBudget":{"maxUnavailable":2}}}}`
	if err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "message pods rolled to 48h", func() error {
		var cm corev1.ConfigMap
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-config"}, &cm); err != nil {
			return err
		}
		if got := cm.Data[config.EnvFeedRetention]; got != "48h0m0s" {
			return fmt.Errorf("%s = %q", config.EnvFeedRetention, got)
		}
		d := deployment("message")
		if d.Spec.Template.Annotations[configHashAnnotation] == msgBefore.Spec.Template.Annotations[configHashAnnotation] {
			return fmt.Errorf("message config-hash unchanged")
		}
		return nil
	})
	settle := func() {
		t.Helper()
		patch := `{"spec":{"push":{"podDisruptionBudget":{"maxUnavailable":3}}}}`
		if err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
			client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "reconcile of the PDB change", func() error {
			var p policyv1.PodDisruptionBudget
			if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-push"}, &p); err != nil {
				return err
			}
			if mu := p.Spec.MaxUnavailable; mu == nil || mu.IntValue() != 3 {
				return fmt.Errorf("push PDB maxUnavailable %v, want 3", mu)
			}
			return nil
		})
		waitReconciled(t, a, ns, name) // the tiers come after the PDB
	}
	settle()
	pushAfter := deployment("push")
	if pushAfter.Generation != pushBefore.Generation || pushAfter.ResourceVersion != pushBefore.ResourceVersion {
		t.Errorf("the push Deployment was written (generation %d -> %d, resourceVersion %s -> %s): a feed retention change must not roll push pods",
			pushBefore.Generation, pushAfter.Generation, pushBefore.ResourceVersion, pushAfter.ResourceVersion)
	}
	if got := jobs(); fmt.Sprint(got) != fmt.Sprint(jobsBefore) {
		t.Errorf("bootstrap Jobs %v -> %v: a feed retention change must not rerun the bootstrap", jobsBefore, got)
	}
}

// createAuthKeys creates the Secret "keys" that minimalSpec's auth names.
func createAuthKeys(t *testing.T, a *apiserver, ns string) {
	t.Helper()
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keys"},
		StringData: map[string]string{"user.key": strings.Repeat("u", 64), "service.key": strings.Repeat("s", 64), "internal.key": strings.Repeat("i", 64)}}
	if err := a.Client.Create(context.Background(), keys); err != nil {
		t.Fatal(err)
	}
}

// renderedMessageConfig awaits the ConfigMap of the IMCluster name and
// returns its data and what the message tier loads from it (failing the
// test if the tier would refuse it).
func renderedMessageConfig(t *testing.T, a *apiserver, ns, name string) (map[string]string, config.Message) {
	t.Helper()
	var cm corev1.ConfigMap
	eventually(t, 30*time.Second, "ConfigMap of "+name, func() error {
		return a.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-config"}, &cm)
	})
	m, err := config.LoadMessage(func(k string) string { return cm.Data[k] })
	if err != nil {
		t.Fatalf("the message tier refuses the ConfigMap of %s: %v", name, err)
	}
	return cm.Data, m
}
