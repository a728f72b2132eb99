package protocol

// Kind says what an Event is.
type Kind string

const (
	KindMessage   Kind = "message"   // a new message; Message is set
	KindRead      Kind = "read"      // From read the conversation up to RefSeq
	KindRecall    Kind = "recall"    // From recalled the message at RefSeq
	KindDelivered Kind = "delivered" // From's device received up to RefSeq
	// KindRejected goes only to the sender's devices: the send of
	// Message.ClientMsgID was accepted into the log but not stored, because
	// the same client_msg_id had been used earlier in log order for other
	// content (error code idempotency_clash). RefSeq is the seq of the
	// message stored under that id when it is in this conversation (0
	// otherwise). Message carries the rejected content.
	KindRejected Kind = "rejected"
	// KindGroup is a change to a group (created, joined, left, removed,
	// role, updated, dissolved) in the group's own timeline, in order with
	// its messages: Group is set, From is who made the change.
	KindGroup Kind = "group"
)

// MessageType is the type of a message's content.
type MessageType string

const (
	TypeText  MessageType = "text"
	TypeImage MessageType = "image"
	TypeFile  MessageType = "file"
	TypeVoice MessageType = "voice"
	TypeVideo MessageType = "video"
)

// Valid reports whether t is a known message type.
func (t MessageType) Valid() bool {
	switch t {
	case TypeText, TypeImage, TypeFile, TypeVoice, TypeVideo:
		return true
	}
	return false
}

// Body is a message's content. Text messages use Text; media messages
// travel as a URL plus metadata (the bytes live in the business's object
// store, never in imcluster).
type Body struct {
	Text       string `json:"text,omitempty"`
	URL        string `json:"url,omitempty"`
	Name       string `json:"name,omitempty"`
	MIME       string `json:"mime,omitempty"`
	Size       int64  `json:"size,omitempty"`
	DurationMs int64  `json:"duration_ms,omitempty"`
	Width      int    `json:"width,omitempty"`
	Height     int    `json:"height,omitempty"`
	// Mentions names members of a group conversation the message is for
	// (user ids, or MentionAll for every member — admins and the owner
	// only). Devices flag a message that names their user or MentionAll.
	Mentions []string `json:"mentions,omitempty"`
}

// MentionAll in Body.Mentions mentions every member of a group.
const MentionAll = "all"

// Message is a stored chat message.
type Message struct {
	MsgID       string      `json:"msg_id"`
	ClientMsgID string      `json:"client_msg_id"`
	From        string      `json:"from"`
	To          string      `json:"to"`
	Type        MessageType `json:"type"`
	Body        *Body       `json:"body,omitempty"` // nil once recalled
	Recalled    bool        `json:"recalled,omitempty"`
	SentAtMs    int64       `json:"sent_at_ms"` // accepted by the API, unix ms
}

// Event is one change to a conversation, as devices see it.
type Event struct {
	Kind   Kind   `json:"kind"`
	ConvID string `json:"conv_id"`
	Seq    int64  `json:"seq"`               // this event's place in the conversation
	From   string `json:"from"`              // who caused it
	RefSeq int64  `json:"ref_seq,omitempty"` // read/recall/delivered: the seq it refers to
	// DeviceID is the device that caused the event, when known, so routing
	// can skip echoing a device's own action back to it.
	DeviceID string   `json:"device_id,omitempty"`
	Message  *Message `json:"message,omitempty"`
	// Group is set for KindGroup.
	Group *GroupChange `json:"group,omitempty"`
	// Reason says why a KindRejected send was not stored: an error code
	// (ErrIdempotencyClash when absent, ErrNotMember, ErrForbidden,
	// ErrGroupDissolved).
	Reason string `json:"reason,omitempty"`
	AtMs   int64  `json:"at_ms"`
}
