package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/imcluster/imcluster/pkg/internal/httpjson"
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

// defaultHTTP is shared by every API and every Client (without TLS settings)
// that has no HTTP client of its own, so their connections to the message
// tier are pooled together.
var defaultHTTP = &http.Client{Timeout: DefaultAPITimeout}

func (a *API) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return defaultHTTP
}

// APIError is a non-2xx answer.
type APIError = httpjson.APIError

// SendRequest is the send endpoint's body (the wire type of package protocol).
type SendRequest = protocol.SendRequest

// SendResponse is the send endpoint's answer (the wire type of package protocol).
type SendResponse = protocol.SendResponse

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
	var hdr map[string]string
	if a.Device != "" {
		hdr = map[string]string{protocol.HeaderDevice: a.Device}
	}
	c := httpjson.Caller{HTTP: a.httpClient(), BaseURL: a.BaseURL, Token: a.Token, MaxBody: 32 << 20, EmptyOK: true}
	return c.Do(ctx, method, path, hdr, in, out)
}
