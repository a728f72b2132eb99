package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Webhook environment (message tier; docs/webhooks.md). Every variable is
// optional: with no URL set no webhook code runs.
const (
	// EnvWebhookBeforeSendURL: the synchronous before_send check on the
	// send path (allow, refuse, or replace the body).
	EnvWebhookBeforeSendURL = "IM_WEBHOOK_BEFORE_SEND_URL"
	// EnvWebhookBeforeSendTimeout bounds one before_send call (default 200ms).
	EnvWebhookBeforeSendTimeout = "IM_WEBHOOK_BEFORE_SEND_TIMEOUT"
	// EnvWebhookBeforeSendOnFailure: what a send does when before_send
	// fails (timeout, error, malformed answer): "open" (default: the send
	// goes on unchanged) or "closed" (the send is refused with 503).
	EnvWebhookBeforeSendOnFailure = "IM_WEBHOOK_BEFORE_SEND_ON_FAILURE"
	// EnvWebhookURL receives the asynchronous events (after_send, ...).
	EnvWebhookURL = "IM_WEBHOOK_URL"
	// EnvWebhookEvents lists the asynchronous events sent (comma
	// separated; default: all of WebhookEvents).
	EnvWebhookEvents = "IM_WEBHOOK_EVENTS"
	// EnvWebhookTimeout bounds one asynchronous delivery attempt (default 5s).
	EnvWebhookTimeout = "IM_WEBHOOK_TIMEOUT"
	// EnvWebhookMaxAttempts: attempts of one event before it goes to the
	// webhook dead-letter topic (default 12: about 3 minutes of backoff).
	EnvWebhookMaxAttempts = "IM_WEBHOOK_MAX_ATTEMPTS"
	// EnvWebhookSecretFile: the HMAC-SHA256 signing secret (a mounted
	// Secret). Required when a URL is set.
	EnvWebhookSecretFile = "IM_WEBHOOK_SECRET_FILE"
	// EnvWebhookGroup: the dispatcher's consumer group (default
	// IM_KAFKA_GROUP + "-webhook").
	EnvWebhookGroup = "IM_WEBHOOK_GROUP"
)

// Asynchronous webhook events.
const (
	WebhookAfterSend      = "after_send"
	WebhookAfterRead      = "after_read"
	WebhookAfterRecall    = "after_recall"
	WebhookUserOnline     = "user_online"
	WebhookUserOffline    = "user_offline"
	WebhookOfflineMessage = "offline_message"
)

// WebhookEvents are all asynchronous events.
var WebhookEvents = []string{WebhookAfterSend, WebhookAfterRead, WebhookAfterRecall,
	WebhookUserOnline, WebhookUserOffline, WebhookOfflineMessage}

// Webhook configures the calls to a business back end.
type Webhook struct {
	BeforeSendURL      string
	BeforeSendTimeout  time.Duration
	BeforeSendFailOpen bool
	URL                string
	Events             []string
	Timeout            time.Duration
	MaxAttempts        int
	SecretFile         string
	Group              string
}

// Webhook defaults.
const (
	DefaultBeforeSendTimeout  = 200 * time.Millisecond
	DefaultWebhookTimeout     = 5 * time.Second
	DefaultWebhookMaxAttempts = 12
)

// Enabled reports whether asynchronous events are configured.
func (w Webhook) Enabled() bool { return w.URL != "" }

// Wants reports whether event is delivered.
func (w Webhook) Wants(event string) bool { return w.URL != "" && slices.Contains(w.Events, event) }

// LoadWebhook reads the webhook configuration; kafkaGroup names the
// default consumer group.
func LoadWebhook(get Getenv, kafkaGroup string) (Webhook, error) {
	var w Webhook
	var errs []string
	w.BeforeSendURL = str(get, EnvWebhookBeforeSendURL, "")
	w.BeforeSendTimeout = dur(get, EnvWebhookBeforeSendTimeout, DefaultBeforeSendTimeout, &errs)
	switch mode := str(get, EnvWebhookBeforeSendOnFailure, "open"); mode {
	case "open":
		w.BeforeSendFailOpen = true
	case "closed":
	default:
		errs = append(errs, fmt.Sprintf("%s: %q, want open or closed", EnvWebhookBeforeSendOnFailure, mode))
	}
	w.URL = str(get, EnvWebhookURL, "")
	w.Events = list(get, EnvWebhookEvents, strings.Join(WebhookEvents, ","))
	for _, e := range w.Events {
		if !slices.Contains(WebhookEvents, e) {
			errs = append(errs, fmt.Sprintf("%s: unknown event %q", EnvWebhookEvents, e))
		}
	}
	w.Timeout = dur(get, EnvWebhookTimeout, DefaultWebhookTimeout, &errs)
	w.MaxAttempts = num(get, EnvWebhookMaxAttempts, DefaultWebhookMaxAttempts, &errs)
	w.SecretFile = str(get, EnvWebhookSecretFile, "")
	w.Group = str(get, EnvWebhookGroup, kafkaGroup+"-webhook")
	for _, u := range []struct{ env, v string }{{EnvWebhookBeforeSendURL, w.BeforeSendURL}, {EnvWebhookURL, w.URL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Sprintf("%s: %q is not an http(s) URL", u.env, u.v))
		}
	}
	if (w.BeforeSendURL != "" || w.URL != "") && w.SecretFile == "" {
		errs = append(errs, EnvWebhookSecretFile+" is required when a webhook URL is set")
	}
	if w.BeforeSendTimeout <= 0 || w.Timeout <= 0 {
		errs = append(errs, "webhook timeouts must be > 0")
	}
	if w.MaxAttempts < 1 {
		errs = append(errs, EnvWebhookMaxAttempts+" must be >= 1")
	}
	return w, joinErrs(errs)
}

// Env renders w as the environment LoadWebhook reads (zero fields left out).
func (w Webhook) Env() map[string]string {
	e := map[string]string{}
	put(e, EnvWebhookBeforeSendURL, w.BeforeSendURL)
	if w.BeforeSendURL != "" {
		putDur(e, EnvWebhookBeforeSendTimeout, w.BeforeSendTimeout)
		if !w.BeforeSendFailOpen {
			e[EnvWebhookBeforeSendOnFailure] = "closed"
		}
	}
	put(e, EnvWebhookURL, w.URL)
	if w.URL != "" {
		putList(e, EnvWebhookEvents, w.Events)
		putDur(e, EnvWebhookTimeout, w.Timeout)
		putInt(e, EnvWebhookMaxAttempts, w.MaxAttempts)
	}
	put(e, EnvWebhookSecretFile, w.SecretFile)
	put(e, EnvWebhookGroup, w.Group)
	return e
}
