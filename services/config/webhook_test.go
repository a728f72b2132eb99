package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadWebhook(t *testing.T) {
	env := func(kv ...string) Getenv {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	w, err := LoadWebhook(env(), "g")
	if err != nil || w.Enabled() || w.BeforeSendURL != "" || !w.BeforeSendFailOpen || w.Group != "g-webhook" ||
		w.BeforeSendTimeout != DefaultBeforeSendTimeout || len(w.Events) != len(WebhookEvents) {
		t.Fatalf("defaults: %+v, %v", w, err)
	}
	full := env(EnvWebhookBeforeSendURL, "http://b/s", EnvWebhookBeforeSendOnFailure, "closed", EnvWebhookBeforeSendTimeout, "150ms",
		EnvWebhookURL, "https://b/e", EnvWebhookEvents, "after_send,offline_message", EnvWebhookSecretFile, "/s", EnvWebhookMaxAttempts, "3")
	w, err = LoadWebhook(full, "g")
	if err != nil || w.BeforeSendFailOpen || w.BeforeSendTimeout != 150*time.Millisecond || !w.Wants(WebhookOfflineMessage) ||
		w.Wants(WebhookAfterRead) || w.MaxAttempts != 3 {
		t.Fatalf("full: %+v, %v", w, err)
	}
	back, err := LoadWebhook(func(k string) string { return w.Env()[k] }, "g")
	if err != nil || back.BeforeSendURL != w.BeforeSendURL || back.BeforeSendFailOpen || back.BeforeSendTimeout != w.BeforeSendTimeout ||
		back.URL != w.URL || strings.Join(back.Events, ",") != "after_send,offline_message" || back.MaxAttempts != 3 || back.SecretFile != "/s" {
		t.Fatalf("Env round trip: %+v, %v", back, err)
	}
	for name, bad := range map[string]Getenv{
		"no secret":     env(EnvWebhookURL, "https://b/e"),
		"not http":      env(EnvWebhookURL, "ftp://b/e", EnvWebhookSecretFile, "/s"),
		"unknown event": env(EnvWebhookURL, "https://b/e", EnvWebhookSecretFile, "/s", EnvWebhookEvents, "after_lunch"),
		"failure mode":  env(EnvWebhookBeforeSendURL, "http://b/s", EnvWebhookSecretFile, "/s", EnvWebhookBeforeSendOnFailure, "ajar"),
		"zero timeout":  env(EnvWebhookBeforeSendURL, "http://b/s", EnvWebhookSecretFile, "/s", EnvWebhookBeforeSendTimeout, "0s"),
		"zero attempts": env(EnvWebhookURL, "https://b/e", EnvWebhookSecretFile, "/s", EnvWebhookMaxAttempts, "0"),
		"relative url":  env(EnvWebhookBeforeSendURL, "/before", EnvWebhookSecretFile, "/s"),
		"bad durations": env(EnvWebhookURL, "https://b/e", EnvWebhookSecretFile, "/s", EnvWebhookTimeout, "soon"),
	} {
		if _, err := LoadWebhook(bad, "g"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
