package protocol

import "encoding/json"

// WebSocket frames between a device and a push node. Every frame is one
// WebSocket text message holding one JSON object with a "type" field; the
// other fields depend on the type. docs/protocol.md is the narrative.
//
// Device → node: login (first frame, exactly once), ping, ack, send,
// refresh (a fresh token for the live session).
// Node → device: welcome, event, pong, send_result, refreshed, error
// (always followed by a close), drain (followed by a close), kick (followed
// by a close), sync (a hint: pushes may have been missed, sync from the
// cursor).

// Frame types.
const (
	FrameLogin      = "login"
	FramePing       = "ping"
	FrameAck        = "ack"
	FrameSend       = "send"
	FrameRefresh    = "refresh"
	FrameWelcome    = "welcome"
	FrameEvent      = "event"
	FramePong       = "pong"
	FrameSendResult = "send_result"
	FrameError      = "error"
	FrameDrain      = "drain"
	FrameKick       = "kick"
	FrameRefreshed  = "refreshed"
	FrameSync       = "sync"
)

// MaxFrameBytes bounds one device→node frame (payload bytes). A bigger frame
// closes the connection with ErrTooLarge before its payload is read.
const MaxFrameBytes = 64 << 10

// MaxAcksPerFrame bounds the acks of one ack frame.
const MaxAcksPerFrame = 256

// ClientFrame is any device→node frame. Unknown fields are refused.
type ClientFrame struct {
	Type string `json:"type"`

	// login; refresh carries only Token (same user, later expiry)
	Token    string `json:"token,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	Terminal string `json:"terminal,omitempty"`

	// ack: the device has the events (conv_id, seq); the node records a
	// delivered receipt for message events (docs/protocol.md).
	Acks []AckItem `json:"acks,omitempty"`

	// send: ID is the device's request id, echoed in send_result. Send is
	// the same JSON the message API's send endpoint takes.
	ID   string          `json:"id,omitempty"`
	Send json.RawMessage `json:"send,omitempty"`
}

// AckItem acknowledges one pushed or synced event.
type AckItem struct {
	ConvID string `json:"conv_id"`
	Seq    int64  `json:"seq"`
}

// ServerFrame is any node→device frame.
type ServerFrame struct {
	Type string `json:"type"`

	// welcome
	NodeID        string `json:"node_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
	Epoch         int64  `json:"epoch,omitempty"`
	HeartbeatMs   int64  `json:"heartbeat_ms,omitempty"`
	ResyncAfterMs int64  `json:"resync_after_ms,omitempty"`

	// welcome and refreshed: when the session's token expires (unix ms);
	// the node closes the session with ErrTokenExpired soon after, unless
	// a refresh frame brought a later token.
	ExpiresAtMs int64 `json:"expires_at_ms,omitempty"`

	// event
	Event *Event `json:"event,omitempty"`

	// send_result: Status is the message API's HTTP status; Result its body
	// on success, Error on failure.
	ID     string          `json:"id,omitempty"`
	Status int             `json:"status,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`

	// error, kick, drain (Error.Code is one of the stable codes);
	// drain also says when to reconnect.
	Error         *Error `json:"error,omitempty"`
	ReconnectInMs int64  `json:"reconnect_in_ms,omitempty"`

	// sync: pushes to this session may have been dropped (Reason says
	// why); the device syncs from its cursor within SyncWithinMs (at a
	// random moment, so a node's devices do not all sync at once).
	Reason       string `json:"reason,omitempty"`
	SyncWithinMs int64  `json:"sync_within_ms,omitempty"`
}

// DeliveredPath is the message tier's internal endpoint that push nodes POST
// DeliveredBatch JSON to (internal bearer token).
const DeliveredPath = "/internal/v1/delivered"

// DeliveredAck says device DeviceID of UserID has conversation ConvID up to Seq.
type DeliveredAck struct {
	ConvID   string `json:"conv_id"`
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Seq      int64  `json:"seq"`
}

// DeliveredBatch is the body of a DeliveredPath call.
type DeliveredBatch struct {
	Acks []DeliveredAck `json:"acks"`
}

// Headers of a send forwarded by a push node (internal token): the user and
// device the push node authenticated on the socket.
const (
	HeaderActAs  = "X-IM-Act-As"
	HeaderDevice = "X-IM-Device"
)

// WebSocket close status codes used with the error codes above (the close
// reason is the error code).
const (
	CloseNormal      = 1000
	ClosePolicy      = 1008 // bad frame, bad token, flood, slow consumer
	CloseTooLarge    = 1009
	CloseGoingAway   = 1001 // drain, kick
	CloseInvalidData = 1007 // invalid UTF-8
)
