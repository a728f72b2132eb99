package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// spec.message.pipelineFetchWait is rendered as IM_PIPELINE_FETCH_WAIT
// into the ConfigMap the message pods read (30ms when unset), and the
// message tier loads the wait asked for. Values outside 1ms–500ms, or not
// written in ms or s, are refused by the apiserver, on create and on
// update.
func TestPipelineFetchWait(t *testing.T) {
	a := startDeployedOperator(t)
	ctx := context.Background()
	ns := newNamespace(t, a)
	createAuthKeys(t, a, ns)
	cluster := func(name, wait string) *v1alpha1.IMCluster {
		spec := minimalSpec()
		spec.Message.PipelineFetchWait = wait
		return &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	}

	for i, v := range []string{"0ms", "0s", "501ms", "1s", "1m", "30", "-5ms", "1.5ms", "500us", "30 ms", "99999999999999999999ms"} {
		t.Run("refused/"+v, func(t *testing.T) {
			err := a.Client.Create(ctx, cluster(fmt.Sprintf("bad-%d", i), v))
			if err == nil {
				t.Fatalf("pipelineFetchWait %q accepted", v)
			}
			if !strings.Contains(err.Error(), "pipelineFetchWait") {
				t.Errorf("error %q does not mention pipelineFetchWait", err)
			}
		})
	}

	tests := []struct {
		name, wait string
		wantSpec   string        // after the apiserver's defaulting
		wantEnv    string        // in the ConfigMap
		wantLoaded time.Duration // config.LoadMessage of the ConfigMap
	}{
		{"unset", "", "30ms", "30ms", config.DefaultFetchWait},
		{"min", "1ms", "1ms", "1ms", time.Millisecond},
		{"max", "500ms", "500ms", "500ms", config.MaxFetchWait},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(tc.name, tc.wait)
			if err := a.Client.Create(ctx, c); err != nil {
				t.Fatalf("pipelineFetchWait %q refused: %v", tc.wait, err)
			}
			if got := c.Spec.Message.PipelineFetchWait; got != tc.wantSpec {
				t.Errorf("spec.message.pipelineFetchWait %q after defaulting, want %q", got, tc.wantSpec)
			}
			data, m := renderedMessageConfig(t, a, ns, tc.name)
			if got, ok := data[config.EnvFetchWait]; !ok || got != tc.wantEnv {
				t.Fatalf("%s = %q (set: %v), want %q", config.EnvFetchWait, got, ok, tc.wantEnv)
			}
			if m.FetchWait != tc.wantLoaded {
				t.Errorf("the message tier loads FetchWait %v, want %v", m.FetchWait, tc.wantLoaded)
			}
		})
	}

	for _, v := range []string{"600ms", "0ms"} {
		patch := fmt.Sprintf(`{"spec":{"message":{"pipelineFetchWait":%q}}}`, v)
		err := a.Client.Patch(ctx, &v1alpha1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "min"}},
			client.RawPatch("application/merge-patch+json", []byte(patch)))
		if err == nil || !strings.Contains(err.Error(), "pipelineFetchWait") {
			t.Errorf("update to pipelineFetchWait %q: err=%v, want a validation error", v, err)
		}
	}
}
