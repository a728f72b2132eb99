// Package sdk is the Go SDK for business back ends: send a private message
// on a user's behalf, and ask presence (is a user online, on which
// terminals, which of a list are online). It calls the message tier's HTTP
// API with a service token (auth.KindService); api/openapi/message.yaml
// describes the endpoints.
//
// Send is idempotent per (from, ClientMsgID): retry with the same
// ClientMsgID after any error, numbering the tries in Message.Attempt (1,
// 2, 3, …), and the same message id comes back — it is derived from (from,
// ClientMsgID). A nil error means the message is in the durable log (see
// the API's send doc); Seq is set when the stored message's seq is known
// (a first attempt, or a retry that found its message stored).
package sdk

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imcluster/imcluster/pkg/internal/httpjson"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/tlsconf"
)

// Paths of the message API the SDK calls.
const (
	PathSend          = "/v1/messages"
	PathPresence      = "/v1/presence/"       // + user id
	PathPresenceQuery = "/v1/presence/online" // POST {"users":[...]}
)

// Client calls the message API as a business back end. New fills it; a
// Client built by hand works too. Nil HTTP: the package's shared client
// (DefaultTimeout), as New leaves it.
type Client struct {
	BaseURL string // e.g. http://message:8080 or https://im.example.com
	Token   string // service token
	HTTP    *http.Client
}

// DefaultTimeout bounds each call of a Client without its own HTTP client.
const DefaultTimeout = 15 * time.Second

// defaultHTTP is shared by every Client without its own HTTP client, so
// their connections to the message tier are pooled together.
var defaultHTTP = &http.Client{Timeout: DefaultTimeout}

// New returns a Client that uses the package's shared HTTP client (calls
// end after DefaultTimeout); set HTTP for another one.
func New(baseURL, serviceToken string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: serviceToken}
}

// NewWithCAFile is New for an https:// base URL whose certificate comes
// from a private CA: its own HTTP client trusts the system roots plus the
// PEM CA bundle at caFile (empty: the system roots only). Verification is
// never skipped.
func NewWithCAFile(baseURL, serviceToken, caFile string) (*Client, error) {
	cfg, err := tlsconf.ClientConfig(caFile)
	if err != nil {
		return nil, err
	}
	c := New(baseURL, serviceToken)
	c.HTTP = HTTPClient(cfg)
	return c, nil
}

// HTTPClient returns an HTTP client like the shared one (DefaultTimeout)
// whose https:// calls use cfg.
func HTTPClient(cfg *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Timeout: DefaultTimeout, Transport: tr}
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// APIError is a non-2xx answer of the message API.
type APIError = httpjson.APIError

// Message is a private message to send.
type Message struct {
	To          string               `json:"to"`
	ClientMsgID string               `json:"client_msg_id"`
	Type        protocol.MessageType `json:"type"`
	Body        protocol.Body        `json:"body"`
	// Attempt numbers the tries of one ClientMsgID: 1 (or 0) for the
	// first, 2, 3, … for retries. A retry may be answered from the stored
	// message instead of being sent again.
	Attempt int `json:"attempt,omitempty"`
}

// SendResult is the send endpoint's answer.
type SendResult struct {
	MsgID  string `json:"msg_id"`
	ConvID string `json:"conv_id,omitempty"`
	Seq    *int64 `json:"seq,omitempty"` // nil: not known yet (a retry sent again)
	AtMs   int64  `json:"sent_at_ms,omitempty"`
	// Duplicate: a retry answered from the stored message.
	Duplicate bool `json:"duplicate,omitempty"`
}

// SendPrivateMessage sends m on behalf of user from.
func (c *Client) SendPrivateMessage(ctx context.Context, from string, m Message) (SendResult, error) {
	var out SendResult
	err := c.do(ctx, http.MethodPost, PathSend, map[string]string{protocol.HeaderActAs: from}, m, &out)
	return out, err
}

// Terminal is one live device session of a user (the wire type of package
// protocol).
type Terminal = protocol.Terminal

// Presence is who is online on which terminals (the presence endpoint's
// answer, the wire type of package protocol).
type Presence = protocol.PresenceResponse

// GetPresence returns the presence of user.
func (c *Client) GetPresence(ctx context.Context, user string) (Presence, error) {
	var out Presence
	err := c.do(ctx, http.MethodGet, PathPresence+url.PathEscape(user), nil, nil, &out)
	return out, err
}

// IsOnline reports whether user has at least one live session.
func (c *Client) IsOnline(ctx context.Context, user string) (bool, error) {
	p, err := c.GetPresence(ctx, user)
	return p.Online, err
}

// OnlineTerminals returns the terminal types user is connected on.
func (c *Client) OnlineTerminals(ctx context.Context, user string) ([]string, error) {
	p, err := c.GetPresence(ctx, user)
	var out []string
	for _, t := range p.Terminals {
		out = append(out, t.Terminal)
	}
	return out, err
}

// OnlineUsers returns which of users are online.
func (c *Client) OnlineUsers(ctx context.Context, users []string) ([]string, error) {
	var out protocol.OnlineResponse
	err := c.do(ctx, http.MethodPost, PathPresenceQuery, nil, protocol.OnlineRequest{Users: users}, &out)
	return out.Online, err
}

func (c *Client) do(ctx context.Context, method, path string, hdr map[string]string, in, out any) error {
	api := httpjson.Caller{HTTP: c.httpClient(), BaseURL: c.BaseURL, Token: c.Token, MaxBody: 16 << 20}
	return api.Do(ctx, method, path, hdr, in, out)
}
