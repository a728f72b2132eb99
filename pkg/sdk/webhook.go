package sdk

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/imcluster/imcluster/services/webhook/wire"
)

// Webhook types (the wire contract, docs/webhooks.md).
type (
	// WebhookEvent is an asynchronous event: after_send, after_read,
	// after_recall, user_online, user_offline, offline_message. Delivered
	// at least once: de-duplicate by ID (also the Idempotency-Key header).
	WebhookEvent = wire.Event
	// BeforeSend is the synchronous before_send request.
	BeforeSend = wire.BeforeSend
	// BeforeSendAnswer allows (zero value), refuses or replaces a send.
	BeforeSendAnswer = wire.BeforeSendAnswer
)

// Webhook event types and before_send actions.
const (
	EventBeforeSend     = wire.EventBeforeSend
	EventAfterSend      = "after_send"
	EventAfterRead      = "after_read"
	EventAfterRecall    = "after_recall"
	EventUserOnline     = "user_online"
	EventUserOffline    = "user_offline"
	EventOfflineMessage = "offline_message"
	ActionAllow         = wire.ActionAllow
	ActionRefuse        = wire.ActionRefuse
	ActionReplace       = wire.ActionReplace
)

// Signature errors (errors.Is).
var (
	ErrWebhookNoSignature  = wire.ErrNoSignature
	ErrWebhookBadSignature = wire.ErrBadSignature
	ErrWebhookStale        = wire.ErrStale
)

// VerifyWebhook checks the signature and timestamp of a webhook request
// whose body was read into body, against any of secrets (several while a
// secret is rotated), with tolerance for clock differences (0:
// wire.DefaultTolerance, 5 minutes).
func VerifyWebhook(r *http.Request, body []byte, secrets [][]byte, now time.Time, tolerance time.Duration) error {
	return wire.Verify(secrets, r.Header.Get(wire.HeaderTimestamp), r.Header.Get(wire.HeaderSignature), body, now, tolerance)
}

// WebhookHandler is an http.Handler for imcluster's webhooks: it verifies
// every request's signature (401 when it fails), decodes it (400 when it
// does not decode) and calls OnBeforeSend or OnEvent.
//
// OnEvent returning nil acknowledges the event (204); an error answers
// 500 and imcluster retries with backoff (then dead-letters it): return
// an error only for failures a retry can fix. A nil OnEvent acknowledges
// every event. OnBeforeSend must answer within the cluster's before_send
// timeout (default 200 ms); nil allows every send.
type WebhookHandler struct {
	Secrets      [][]byte
	Tolerance    time.Duration    // 0: 5 minutes
	Now          func() time.Time // nil: time.Now
	MaxBody      int64            // 0: 2 MiB
	OnEvent      func(ctx context.Context, ev WebhookEvent) error
	OnBeforeSend func(ctx context.Context, req BeforeSend) BeforeSendAnswer
}

func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = 2 << 20
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		http.Error(w, "body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	if err := VerifyWebhook(r, body, h.Secrets, now, h.Tolerance); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.Header.Get(wire.HeaderEvent) == wire.EventBeforeSend {
		var req BeforeSend
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad before_send body", http.StatusBadRequest)
			return
		}
		ans := BeforeSendAnswer{Action: ActionAllow}
		if h.OnBeforeSend != nil {
			ans = h.OnBeforeSend(r.Context(), req)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
		return
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" {
		http.Error(w, "bad event body", http.StatusBadRequest)
		return
	}
	if h.OnEvent != nil {
		if err := h.OnEvent(r.Context(), ev); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
