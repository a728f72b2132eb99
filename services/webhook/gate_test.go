package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/protocol"
)

func gateFor(t testing.TB, h http.Handler, timeout time.Duration) *Gate {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return NewGate(config.Webhook{BeforeSendURL: srv.URL, BeforeSendTimeout: timeout, BeforeSendFailOpen: true}, []byte("secret"))
}

var probe = api.GateRequest{MsgID: "m", ConvID: "a|b", From: "a", To: "b", ClientMsgID: "c", Type: protocol.TypeText,
	Body: &protocol.Body{Text: "hi"}, Attempt: 1, AtMs: 1}

func TestGateAnswers(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		answer  string
		delay   time.Duration
		want    api.GateDecision
		wantErr bool
	}{
		{"allow", 200, `{"action":"allow"}`, 0, api.GateDecision{}, false},
		{"empty action allows", 200, `{}`, 0, api.GateDecision{}, false},
		{"refuse", 200, `{"action":"refuse","reason":"blocked","message":"no"}`, 0, api.GateDecision{Refuse: true, Reason: "blocked", Message: "no"}, false},
		{"refuse, bad reason", 200, `{"action":"refuse","reason":"Not Allowed"}`, 0, api.GateDecision{}, true},
		{"replace", 200, `{"action":"replace","body":{"text":"***"}}`, 0, api.GateDecision{Body: &protocol.Body{Text: "***"}}, false},
		{"replace without body", 200, `{"action":"replace"}`, 0, api.GateDecision{}, true},
		{"unknown action", 200, `{"action":"maybe"}`, 0, api.GateDecision{}, true},
		{"not json", 200, `<html>`, 0, api.GateDecision{}, true},
		{"500", 500, `{"action":"allow"}`, 0, api.GateDecision{}, true},
		{"timeout", 200, `{"action":"allow"}`, 500 * time.Millisecond, api.GateDecision{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := gateFor(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(c.delay):
				case <-r.Context().Done():
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.answer))
			}), 100*time.Millisecond)
			t0 := time.Now()
			d, err := g.BeforeSend(context.Background(), probe)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if took := time.Since(t0); took > time.Second {
				t.Fatalf("took %v with a 100ms timeout", took)
			}
			if err == nil && (d.Refuse != c.want.Refuse || d.Reason != c.want.Reason || d.Message != c.want.Message ||
				(d.Body == nil) != (c.want.Body == nil) || (d.Body != nil && d.Body.Text != c.want.Body.Text)) {
				t.Fatalf("decision %+v, want %+v", d, c.want)
			}
			if err != nil && c.answer != `{"action":"allow"}` && c.status == 200 && !errors.Is(err, api.ErrGateInvalid) && c.delay == 0 {
				t.Fatalf("a malformed answer's error does not wrap ErrGateInvalid: %v", err)
			}
		})
	}
}

// sdkReceiver is pkg/sdk's handler allowing every send.
func sdkReceiver() http.Handler {
	return &sdk.WebhookHandler{Secrets: [][]byte{[]byte("secret")}, OnBeforeSend: func(context.Context, sdk.BeforeSend) sdk.BeforeSendAnswer {
		return sdk.BeforeSendAnswer{Action: sdk.ActionAllow}
	}}
}

// BenchmarkGateBeforeSend: one before_send round trip to a local receiver
// (signing, HTTP on a kept-alive connection, the SDK's verification and
// answer, decoding), sequentially.
func BenchmarkGateBeforeSend(b *testing.B) {
	g := gateFor(b, sdkReceiver(), time.Second)
	ctx := context.Background()
	for b.Loop() {
		if d, err := g.BeforeSend(ctx, probe); err != nil || d.Refuse {
			b.Fatal(d, err)
		}
	}
}

// TestGateLatencyPaced measures before_send's latency at a steady rate
// (IM_WEBHOOK_BENCH_RATE, default 300/s, for IM_WEBHOOK_BENCH_SECONDS,
// default 10) against a local receiver: what the gate adds to a send.
// A measurement: runs only with IM_WEBHOOK_BENCH=1.
func TestGateLatencyPaced(t *testing.T) {
	if os.Getenv("IM_WEBHOOK_BENCH") == "" {
		t.Skip("a measurement: set IM_WEBHOOK_BENCH=1")
	}
	rate, secs := 300.0, 10
	if v, err := strconv.ParseFloat(os.Getenv("IM_WEBHOOK_BENCH_RATE"), 64); err == nil {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("IM_WEBHOOK_BENCH_SECONDS")); err == nil {
		secs = v
	}
	g := gateFor(t, sdkReceiver(), time.Second)
	ctx := context.Background()
	n := int(rate * float64(secs))
	lat := make([]time.Duration, 0, n)
	done := make(chan time.Duration, n)
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) * float64(time.Second) / rate))))
		go func() {
			t0 := time.Now()
			if _, err := g.BeforeSend(ctx, probe); err != nil {
				t.Error(err)
			}
			done <- time.Since(t0)
		}()
	}
	for range n {
		lat = append(lat, <-done)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	t.Log(fmt.Sprintf("before_send at %.0f/s for %ds: n=%d p50 %v p90 %v p99 %v max %v (elapsed %v)",
		rate, secs, len(lat), at(0.5), at(0.9), at(0.99), lat[len(lat)-1], time.Since(start).Round(time.Millisecond)))
}
