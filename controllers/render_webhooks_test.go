package controllers

import (
	"testing"
	"time"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// spec.webhooks renders the IM_WEBHOOK_* environment that
// config.LoadWebhook reads back, mounts the signing secret in the message
// tier only (a change of it rolls message, not push), and changes only the
// message tier's hash.
func TestWebhooksRendering(t *testing.T) {
	base, err := renderConfig(defaulted(nil))
	if err != nil {
		t.Fatal(err)
	}
	for k := range base.shared {
		if len(k) > 11 && k[:11] == "IM_WEBHOOK_" {
			t.Fatalf("no spec.webhooks, yet %s rendered", k)
		}
	}
	c := defaulted(func(c *v1alpha1.IMCluster) {
		c.Spec.Webhooks = &v1alpha1.WebhooksSpec{SecretName: "hooks", URL: "https://biz.example.com/im/events",
			Events:     []string{"after_send", "offline_message"},
			BeforeSend: &v1alpha1.BeforeSendWebhookSpec{URL: "https://biz.example.com/im/before", OnFailure: "closed", Timeout: "150ms"}}
	})
	r, err := renderConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if r.messageHash == base.messageHash || r.pushHash != base.pushHash {
		t.Fatalf("hashes: message changed %v (want true), push changed %v (want false)", r.messageHash != base.messageHash, r.pushHash != base.pushHash)
	}
	w, err := config.LoadWebhook(func(k string) string { return r.shared[k] }, "im-pipeline")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Webhook{BeforeSendURL: "https://biz.example.com/im/before", BeforeSendTimeout: 150 * time.Millisecond,
		URL: "https://biz.example.com/im/events", Events: []string{"after_send", "offline_message"}, Timeout: 5 * time.Second,
		MaxAttempts: 12, SecretFile: webhookDir + "/secret", Group: "im-pipeline-webhook"}
	if w.BeforeSendURL != want.BeforeSendURL || w.BeforeSendTimeout != want.BeforeSendTimeout || w.BeforeSendFailOpen ||
		w.URL != want.URL || len(w.Events) != 2 || w.Events[1] != "offline_message" || w.Timeout != want.Timeout ||
		w.MaxAttempts != want.MaxAttempts || w.SecretFile != want.SecretFile || w.Group != want.Group {
		t.Fatalf("read back %+v, want %+v", w, want)
	}
	msgUses, pushUses := tierRestartSecrets(c, TierMessage), tierRestartSecrets(c, TierPush)
	if u := msgUses["hooks"]; u == nil || !u.keys["secret"] {
		t.Fatalf("message tier does not read the webhook secret at start: %+v", msgUses)
	}
	if pushUses["hooks"] != nil {
		t.Fatal("push tier mounts the webhook secret")
	}
	c.Spec.Webhooks.BeforeSend.Timeout = "soon"
	if _, err := renderConfig(c); err == nil {
		t.Fatal("a bad beforeSend.timeout rendered")
	}
}
