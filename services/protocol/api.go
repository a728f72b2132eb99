package protocol

// Request and response bodies of the message tier's HTTP API that more than
// one party encodes: the server (services/message/api), the device client
// (pkg/client) and the SDK (pkg/sdk) all use these, so the JSON field names
// are written once. api/openapi/message.yaml is the reference of the
// endpoints. The JSON names are part of the wire contract: never rename one.

// SendRequest is the body of POST /v1/messages.
type SendRequest struct {
	To          string      `json:"to"`
	ClientMsgID string      `json:"client_msg_id"`
	Type        MessageType `json:"type"`
	Body        *Body       `json:"body"`
}

// SendResponse answers a send.
type SendResponse struct {
	MsgID    string `json:"msg_id"`
	ConvID   string `json:"conv_id"`
	Seq      *int64 `json:"seq,omitempty"` // the message's seq, when known
	SentAtMs int64  `json:"sent_at_ms"`
	// Duplicate is true when this answers a retry of an earlier send.
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
