package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// API calls the message tier's HTTP API as a user (user token).
// api/openapi/message.yaml is the reference of the endpoints.
type API struct {
	BaseURL string
	Token   string
	Device  string       // sent as X-IM-Device when set
	HTTP    *http.Client // nil: a client whose calls end after DefaultAPITimeout
}

// DefaultAPITimeout bounds each call of an API without its own HTTP client
// (and each sync call of a Client without one): a message tier that
// accepts a connection and never answers must not hang a device forever.
const DefaultAPITimeout = 15 * time.Second

var defaultHTTP = &http.Client{Timeout: DefaultAPITimeout}

func (a *API) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return defaultHTTP
}

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("message API answered %d: %s: %s", e.Status, e.Code, e.Message)
}

// SendRequest is the send endpoint's body.
type SendRequest struct {
	To          string               `json:"to"`
	ClientMsgID string               `json:"client_msg_id"`
	Type        protocol.MessageType `json:"type"`
	Body        *protocol.Body       `json:"body"`
}

// SendResponse is the send endpoint's answer.
type SendResponse struct {
	MsgID     string `json:"msg_id"`
	ConvID    string `json:"conv_id"`
	Seq       *int64 `json:"seq,omitempty"`
	SentAtMs  int64  `json:"sent_at_ms"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// Send sends a message (idempotent per ClientMsgID).
func (a *API) Send(ctx context.Context, req SendRequest) (SendResponse, error) {
	var out SendResponse
	err := a.Do(ctx, http.MethodPost, "/v1/messages", req, &out)
	return out, err
}

// Read marks conv read up to seq.
func (a *API) Read(ctx context.Context, conv string, seq int64) error {
	return a.Do(ctx, http.MethodPost, "/v1/conversations/"+url.PathEscape(conv)+"/read", map[string]int64{"seq": seq}, nil)
}

// Recall recalls the caller's message at seq in conv.
func (a *API) Recall(ctx context.Context, conv string, seq int64) error {
	return a.Do(ctx, http.MethodPost, "/v1/conversations/"+url.PathEscape(conv)+"/recall", map[string]int64{"seq": seq}, nil)
}

// Get calls a GET endpoint (path with query) and decodes the answer into out.
func (a *API) Get(ctx context.Context, pathAndQuery string, out any) error {
	return a.Do(ctx, http.MethodGet, pathAndQuery, nil, out)
}

// Do calls the API; in (if not nil) is sent as JSON, the answer decoded
// into out (if not nil; a *json.RawMessage gets the raw body).
func (a *API) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Device != "" {
		req.Header.Set(protocol.HeaderDevice, a.Device)
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("while calling %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("while reading %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var pe protocol.Error
		if json.Unmarshal(b, &pe) != nil || pe.Code == "" {
			pe = protocol.Error{Code: protocol.ErrInternal, Message: strings.TrimSpace(string(b))}
		}
		return &APIError{Status: resp.StatusCode, Code: pe.Code, Message: pe.Message}
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("while decoding %s %s: %w", method, path, err)
		}
	}
	return nil
}
