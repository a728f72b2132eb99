package protocol

// Request and response bodies of the message tier's HTTP API that more than
// one party encodes: the server (services/message/api), the device client
// (pkg/client) and the SDK (pkg/sdk) all use these, so the JSON field names
// are written once. api/openapi/message.yaml is the reference of the
// endpoints. The JSON names are part of the wire contract: never rename one.

// SendRequest is the body of POST /v1/messages.
type SendRequest struct {
	// To is the peer of a 1:1 message; GroupID the group of a group
	// message. Exactly one is set.
	To          string      `json:"to,omitempty"`
	GroupID     string      `json:"group_id,omitempty"`
	ClientMsgID string      `json:"client_msg_id"`
	Type        MessageType `json:"type"`
	Body        *Body       `json:"body"`
	// Attempt numbers the tries of one client_msg_id: 1 (or absent) for the
	// first, 2, 3, … for retries. A retry may cost the API one plain read
	// to answer with the stored message; a first attempt never reads.
	// Clients that do not count may always send 0: every try is then a
	// first attempt, and the pipeline still stores the message once.
	Attempt int `json:"attempt,omitempty"`
}

// MaxAttempt bounds SendRequest.Attempt.
const MaxAttempt = 1000

// SendResponse answers a send: the message is in the durable log. MsgID is
// always set and is the same for every attempt of one (sender,
// client_msg_id). Seq is set only when the API knows the stored message's
// seq: a first attempt's own place in the log (unless the client_msg_id
// was used before without marking the try a retry — the pipeline then
// keeps the earlier copy), or a retry that found the stored message. A
// retry produced again answers without Seq; the sender's devices get the
// message's event (with its seq) from push or sync.
type SendResponse struct {
	MsgID    string `json:"msg_id"`
	ConvID   string `json:"conv_id"`
	Seq      *int64 `json:"seq,omitempty"`
	SentAtMs int64  `json:"sent_at_ms"`
	// Duplicate is true when this answers a retry whose message was
	// already stored (nothing was produced again).
	Duplicate bool `json:"duplicate,omitempty"`
}

// Terminal is one online device (live session) of a user.
type Terminal struct {
	DeviceID string `json:"device_id"`
	Terminal string `json:"terminal"`
	SinceMs  int64  `json:"since_ms"`
}

// PresenceResponse answers GET /v1/presence/{user}: whether the user is
// online, and on which terminals.
type PresenceResponse struct {
	UserID    string     `json:"user_id"`
	Online    bool       `json:"online"`
	Terminals []Terminal `json:"terminals"`
}

// OnlineRequest is the body of POST /v1/presence/online.
type OnlineRequest struct {
	Users []string `json:"users"`
}

// OnlineResponse lists which of the asked users are online.
type OnlineResponse struct {
	Online []string `json:"online"`
}
