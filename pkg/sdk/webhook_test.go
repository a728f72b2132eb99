package sdk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/webhook/wire"
)

func TestWebhookHandlerVerifiesSignatures(t *testing.T) {
	secret, other := []byte("s3cret-key"), []byte("another-key")
	now := time.Unix(1_800_000_000, 0)
	body := `{"type":"after_send","id":"m1:after_send","at_ms":1,"conv_id":"a|b","seq":7}`
	sign := func(key []byte, ts time.Time, b string) string { return wire.Signature(key, ts.Unix(), []byte(b)) }
	cases := []struct {
		name   string
		ts     time.Time
		sig    string
		body   string
		status int
	}{
		{"valid", now, sign(secret, now, body), body, http.StatusNoContent},
		{"valid, clock 4m ahead", now.Add(4 * time.Minute), sign(secret, now.Add(4*time.Minute), body), body, http.StatusNoContent},
		{"rotation: second of two", now, sign(other, now, body) + "," + sign(secret, now, body), body, http.StatusNoContent},
		{"tampered body", now, sign(secret, now, body), strings.Replace(body, `"seq":7`, `"seq":8`, 1), http.StatusUnauthorized},
		{"wrong secret", now, sign(other, now, body), body, http.StatusUnauthorized},
		{"stale", now.Add(-6 * time.Minute), sign(secret, now.Add(-6*time.Minute), body), body, http.StatusUnauthorized},
		{"timestamp changed after signing", now.Add(time.Second), sign(secret, now, body), body, http.StatusUnauthorized},
		{"no signature", now, "", body, http.StatusUnauthorized},
		{"signed garbage", now, sign(secret, now, "{"), "{", http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []sdk.WebhookEvent
			h := &sdk.WebhookHandler{Secrets: [][]byte{secret}, Now: func() time.Time { return now },
				OnEvent: func(_ context.Context, ev sdk.WebhookEvent) error { got = append(got, ev); return nil }}
			req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(c.body))
			req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(c.ts.Unix(), 10))
			if c.sig != "" {
				req.Header.Set(wire.HeaderSignature, c.sig)
			}
			req.Header.Set(wire.HeaderEvent, "after_send")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, c.status, rec.Body)
			}
			if ok := c.status == http.StatusNoContent; ok != (len(got) == 1) {
				t.Fatalf("handler called %d times, want %v", len(got), ok)
			}
			if len(got) == 1 && (got[0].ID != "m1:after_send" || got[0].Seq != 7) {
				t.Fatalf("decoded %+v", got[0])
			}
		})
	}
}

func TestWebhookHandlerBeforeSend(t *testing.T) {
	secret := []byte("k")
	h := &sdk.WebhookHandler{Secrets: [][]byte{secret}, OnBeforeSend: func(_ context.Context, r sdk.BeforeSend) sdk.BeforeSendAnswer {
		if r.To == "blocked" {
			return sdk.BeforeSendAnswer{Action: sdk.ActionRefuse, Reason: "blocked"}
		}
		return sdk.BeforeSendAnswer{Action: sdk.ActionAllow}
	}}
	body := `{"type":"before_send","msg_id":"x","conv_id":"a|blocked","from":"a","to":"blocked","client_msg_id":"c","message_type":"text","body":{"text":"hi"},"at_ms":1}`
	ts := time.Now()
	req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
	req.Header.Set(wire.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(wire.HeaderSignature, wire.Signature(secret, ts.Unix(), []byte(body)))
	req.Header.Set(wire.HeaderEvent, wire.EventBeforeSend)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"action":"refuse"`) || !strings.Contains(rec.Body.String(), `"reason":"blocked"`) {
		t.Fatalf("answer %d %s", rec.Code, rec.Body)
	}
}
