package controllers

import (
	"fmt"
	"time"

	"github.com/imcluster/imcluster/api/v1alpha1"
	"github.com/imcluster/imcluster/services/config"
)

// webhookDir is where the message tier mounts spec.webhooks' signing secret.
const webhookDir = mountRoot + "/webhook"

// webhookConfig renders spec.webhooks as the message tier's config.Webhook
// (zero when unset: no IM_WEBHOOK_* variable, no webhook code runs).
func webhookConfig(c *v1alpha1.IMCluster) (config.Webhook, error) {
	w := c.Spec.Webhooks
	if w == nil {
		return config.Webhook{}, nil
	}
	out := config.Webhook{SecretFile: webhookDir + "/secret", URL: w.URL, Events: w.Events, MaxAttempts: int(w.MaxAttempts)}
	if w.URL != "" && w.Timeout != "" {
		d, err := time.ParseDuration(w.Timeout)
		if err != nil || d <= 0 {
			return out, fmt.Errorf("spec.webhooks.timeout %q: want a positive duration", w.Timeout)
		}
		out.Timeout = d
	}
	if b := w.BeforeSend; b != nil {
		out.BeforeSendURL = b.URL
		out.BeforeSendFailOpen = b.OnFailure != "closed"
		if b.Timeout != "" {
			d, err := time.ParseDuration(b.Timeout)
			if err != nil || d <= 0 {
				return out, fmt.Errorf("spec.webhooks.beforeSend.timeout %q: want a positive duration", b.Timeout)
			}
			out.BeforeSendTimeout = d
		}
	}
	return out, nil
}
