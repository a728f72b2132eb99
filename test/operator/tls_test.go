package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
)

// spec.message.tls and spec.push.tls mount their Secret read-only and set
// the IM_TLS_* variables; push pods trust the message CA and call the
// message Service over https; probes stay on the plain metrics port. A
// cluster without them has none of it. An empty secretName is refused by
// the CRD.
func TestListenerTLSMountsAndEnv(t *testing.T) {
	a := startDeployedOperator(t)
	ctx := context.Background()
	ns := newNamespace(t, a)
	for name, data := range map[string]map[string]string{
		"keys":     {"user.key": strings.Repeat("u", 64), "service.key": strings.Repeat("s", 64), "internal.key": strings.Repeat("i", 64)},
		"msg-tls":  {"tls.crt": "crt", "tls.key": "key", "ca.crt": "ca"},
		"push-tls": {"tls.crt": "pcrt", "tls.key": "pkey"},
	} {
		if err := a.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(msgTLS, pushTLS *v1alpha1.TLSSecretRef) v1alpha1.IMClusterSpec {
		s := minimalSpec()
		s.Message.TLS, s.Push.TLS = msgTLS, pushTLS
		return s
	}
	bad := &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
		Spec: spec(&v1alpha1.TLSSecretRef{SecretName: ""}, nil)}
	if err := a.Client.Create(ctx, bad); err == nil || !strings.Contains(err.Error(), "secretName") {
		t.Fatalf("empty spec.message.tls.secretName: err=%v, want a validation error", err)
	}
	for name, s := range map[string]v1alpha1.IMClusterSpec{
		"plain": spec(nil, nil),
		"tls":   spec(&v1alpha1.TLSSecretRef{SecretName: "msg-tls"}, &v1alpha1.TLSSecretRef{SecretName: "push-tls"}),
	} {
		if err := a.Client.Create(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: s}); err != nil {
			t.Fatal(err)
		}
		completeJob(t, a, waitJob(t, a, ns, name))
		waitDeployments(t, a, ns, name)
	}

	type want struct {
		volumes map[string]string   // volume → Secret
		items   map[string][]string // volume → projected keys
		env     map[string]string
	}
	tlsEnv := map[string]string{"IM_TLS_CERT_FILE": "/etc/imcluster/tls/tls.crt", "IM_TLS_KEY_FILE": "/etc/imcluster/tls/tls.key"}
	pushEnv := map[string]string{"IM_TLS_CA_FILE": "/etc/imcluster/message-ca/ca.crt"}
	for k, v := range tlsEnv {
		pushEnv[k] = v
	}
	tests := []struct {
		cluster, tier string
		want          want
		messageURL    string
	}{
		{"plain", "message", want{}, ""},
		{"plain", "push", want{}, "http://plain-message."},
		{"tls", "message", want{volumes: map[string]string{"tls": "msg-tls"},
			items: map[string][]string{"tls": {"tls.crt", "tls.key"}}, env: tlsEnv}, ""},
		{"tls", "push", want{volumes: map[string]string{"tls": "push-tls", "message-ca": "msg-tls"},
			items: map[string][]string{"tls": {"tls.crt", "tls.key"}, "message-ca": {"ca.crt"}}, env: pushEnv}, "https://tls-message."},
	}
	for _, tc := range tests {
		t.Run(tc.cluster+"/"+tc.tier, func(t *testing.T) {
			var d appsv1.Deployment
			if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.cluster + "-" + tc.tier}, &d); err != nil {
				t.Fatal(err)
			}
			pod := d.Spec.Template.Spec
			ctr := pod.Containers[0]
			if err := checkTLS(pod, ctr, tc.want.volumes, tc.want.items, tc.want.env); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*corev1.Probe{ctr.StartupProbe, ctr.LivenessProbe, ctr.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "metrics" || p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
					t.Fatalf("probe %+v, want plain HTTP on the metrics port", p)
				}
			}
			if tc.messageURL != "" {
				var cm corev1.ConfigMap
				if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: tc.cluster + "-config"}, &cm); err != nil {
					t.Fatal(err)
				}
				if u := cm.Data["IM_MESSAGE_URL"]; !strings.HasPrefix(u, tc.messageURL) {
					t.Fatalf("IM_MESSAGE_URL %q, want %s…", u, tc.messageURL)
				}
			}
		})
	}
}

// checkTLS compares a pod's TLS volumes (tls, message-ca), their read-only
// mounts and the IM_TLS_* env with the wanted ones (none when empty).
func checkTLS(pod corev1.PodSpec, ctr corev1.Container, vols map[string]string, items map[string][]string, env map[string]string) error {
	for _, name := range []string{"tls", "message-ca"} {
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == name {
				vol = &pod.Volumes[i]
			}
		}
		var mount *corev1.VolumeMount
		for i := range ctr.VolumeMounts {
			if ctr.VolumeMounts[i].Name == name {
				mount = &ctr.VolumeMounts[i]
			}
		}
		secret, wanted := vols[name]
		switch {
		case !wanted && (vol != nil || mount != nil):
			return fmt.Errorf("volume %s present, want none", name)
		case !wanted:
			continue
		case vol == nil || vol.Secret == nil || vol.Secret.SecretName != secret:
			return fmt.Errorf("volume %s = %+v, want Secret %s", name, vol, secret)
		case mount == nil || !mount.ReadOnly:
			return fmt.Errorf("mount of %s = %+v, want read-only", name, mount)
		}
		var keys []string
		for _, it := range vol.Secret.Items {
			keys = append(keys, it.Key)
		}
		if fmt.Sprint(keys) != fmt.Sprint(items[name]) {
			return fmt.Errorf("volume %s projects %v, want %v", name, keys, items[name])
		}
	}
	got := map[string]string{}
	for _, e := range ctr.Env {
		if strings.HasPrefix(e.Name, "IM_TLS_") {
			got[e.Name] = e.Value
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(env) && (len(got) != 0 || len(env) != 0) {
		return fmt.Errorf("IM_TLS_* env %v, want %v", got, env)
	}
	return nil
}
