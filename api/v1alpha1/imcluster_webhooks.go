package v1alpha1

// WebhooksSpec makes the message tier call a business back end
// (docs/webhooks.md): before_send on the send path, and the asynchronous
// events (after_send, after_read, after_recall, user_online, user_offline,
// offline_message) from a consumer group of their own. Every request is
// signed with HMAC-SHA256 under the Secret's key.
// +kubebuilder:validation:XValidation:rule="has(self.url) || has(self.beforeSend)",message="webhooks needs url, beforeSend or both"
type WebhooksSpec struct {
	// SecretName of a Secret in the IMCluster's namespace holding the
	// signing secret. Read at start: a change rolls the message tier.
	// +kubebuilder:validation:MinLength=1
	// +required
	SecretName string `json:"secretName"`

	// SecretKey is the key of the signing secret in that Secret.
	// +kubebuilder:default=secret
	// +optional
	SecretKey string `json:"secretKey,omitempty"`

	// BeforeSend is the synchronous check of every send.
	// +optional
	BeforeSend *BeforeSendWebhookSpec `json:"beforeSend,omitempty"`

	// URL receives the asynchronous events (POST, JSON).
	// +kubebuilder:validation:Pattern=`^https?://.+`
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`

	// Events are the asynchronous events sent to url (default: all).
	// +listType=set
	// +kubebuilder:validation:items:Enum=after_send;after_read;after_recall;user_online;user_offline;offline_message
	// +optional
	Events []string `json:"events,omitempty"`

	// Timeout of one asynchronous delivery attempt (a Go duration).
	// +kubebuilder:default="5s"
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// MaxAttempts of one asynchronous event before it goes to the webhook
	// dead-letter topic (<kafka.topic>.webhook.dlq).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:default=12
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`
}

// BeforeSendWebhookSpec is the synchronous before_send check.
type BeforeSendWebhookSpec struct {
	// URL called for every send before it is accepted.
	// +kubebuilder:validation:Pattern=`^https?://.+`
	// +kubebuilder:validation:MaxLength=2048
	// +required
	URL string `json:"url"`

	// Timeout of one call (a Go duration): it bounds what before_send adds
	// to a send.
	// +kubebuilder:default="200ms"
	// +optional
	Timeout string `json:"timeout,omitempty"`

	// OnFailure: what a send does when the call fails or times out: open
	// (the send goes on unchanged) or closed (the send is answered 503 and
	// the client retries).
	// +kubebuilder:validation:Enum=open;closed
	// +kubebuilder:default=open
	// +optional
	OnFailure string `json:"onFailure,omitempty"`
}

// setDefaults mirrors the markers' defaults (nil: nothing to default).
func (w *WebhooksSpec) setDefaults() {
	if w == nil {
		return
	}
	setString(&w.SecretKey, "secret")
	setString(&w.Timeout, "5s")
	setInt32(&w.MaxAttempts, 12)
	if b := w.BeforeSend; b != nil {
		setString(&b.Timeout, "200ms")
		setString(&b.OnFailure, "open")
	}
}
