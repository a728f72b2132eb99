package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// RecordVersion is the version of the Record encoding.
const RecordVersion = 1

// Limits shared by the API and the pipeline.
const (
	MaxClientMsgIDLen = 64
	MaxDeviceIDLen    = 64
	MaxURLLen         = 2048
	MaxNameLen        = 256
	MaxMIMELen        = 128
	// MaxBodyCeiling is the largest message body the protocol admits,
	// whatever IM_MAX_MESSAGE_BYTES says (config refuses more). The API
	// enforces the configured limit; the pipeline checks records against
	// this ceiling only, so lowering the limit never dead-letters records
	// that were already acknowledged under a higher one.
	MaxBodyCeiling = 1 << 20
)

// Record is one conversation change in the Kafka log (key = ConvID). The
// pipeline turns it into stored rows and a protocol.Event whose Seq is the
// record's offset.
type Record struct {
	V        int           `json:"v"`
	Kind     protocol.Kind `json:"kind"`
	ConvID   string        `json:"conv_id"`
	From     string        `json:"from"`
	DeviceID string        `json:"device_id,omitempty"`
	AtMs     int64         `json:"at_ms"` // accepted by the API, unix ms

	// Kind message.
	MsgID       string               `json:"msg_id,omitempty"`
	ClientMsgID string               `json:"client_msg_id,omitempty"`
	Type        protocol.MessageType `json:"type,omitempty"`
	Body        *protocol.Body       `json:"body,omitempty"`
	// Retry marks a record produced by a send the client marked as a
	// retry (attempt > 1) whose stored message the API could not find. It
	// is informational (metrics): the pipeline de-duplicates every message
	// record by MsgID, marked or not.
	Retry bool `json:"retry,omitempty"`

	// Kinds read, recall, delivered: the seq referred to.
	RefSeq int64 `json:"ref_seq,omitempty"`

	// Kind group: the change.
	Group *protocol.GroupChange `json:"group,omitempty"`
}

// IsGroup reports whether the record belongs to a group conversation.
func (r *Record) IsGroup() bool { return IsGroupConv(r.ConvID) }

// To returns the other participant of a 1:1 record's conversation ("" for
// a group).
func (r *Record) To() string {
	p, _ := Peer(r.ConvID, r.From)
	return p
}

// HashTarget is where a message goes, as its content hash sees it
// (ContentHash): the peer of a 1:1 message, the conversation of a group
// message.
func (r *Record) HashTarget() string {
	if r.IsGroup() {
		return r.ConvID
	}
	return r.To()
}

// Encode returns the record's wire form.
func (r *Record) Encode() ([]byte, error) {
	r.V = RecordVersion
	return json.Marshal(r)
}

// Decode parses and validates a record; maxBody bounds the body's encoding
// (the pipeline passes MaxBodyCeiling).
func Decode(b []byte, maxBody int) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("while decoding record: %w", err)
	}
	if dec.More() {
		return r, errors.New("while decoding record: trailing data")
	}
	if r.V != RecordVersion {
		return r, fmt.Errorf("record version %d, want %d", r.V, RecordVersion)
	}
	return r, r.Validate(maxBody)
}

// Validate checks everything the pipeline relies on.
func (r *Record) Validate(maxBody int) error {
	if r.IsGroup() {
		if _, err := ParseGroupConv(r.ConvID); err != nil {
			return err
		}
		if err := auth.ValidSubject(r.From); err != nil {
			return fmt.Errorf("from: %w", err)
		}
	} else if _, ok := Peer(r.ConvID, r.From); !ok {
		return fmt.Errorf("sender %q is not in conversation %q", r.From, r.ConvID)
	}
	if r.Group != nil && r.Kind != protocol.KindGroup {
		return fmt.Errorf("%s record carries a group change", r.Kind)
	}
	if r.DeviceID != "" {
		if err := ValidDeviceID(r.DeviceID); err != nil {
			return err
		}
	}
	if r.AtMs <= 0 {
		return errors.New("at_ms missing")
	}
	switch r.Kind {
	case protocol.KindMessage:
		if r.MsgID == "" || len(r.MsgID) > 64 {
			return errors.New("msg_id missing or too long")
		}
		if err := ValidClientMsgID(r.ClientMsgID); err != nil {
			return err
		}
		if err := ValidBody(r.Type, r.Body, maxBody); err != nil {
			return err
		}
		if len(r.Body.Mentions) > 0 && !r.IsGroup() {
			return errors.New("mentions outside a group")
		}
		return nil
	case protocol.KindGroup:
		if !r.IsGroup() {
			return errors.New("group record outside a group")
		}
		if r.MsgID != "" || r.Body != nil || r.Type != "" || r.ClientMsgID != "" || r.RefSeq != 0 {
			return errors.New("group record carries message fields")
		}
		return validGroupChange(r.Group)
	case protocol.KindRead, protocol.KindRecall, protocol.KindDelivered:
		if r.Kind == protocol.KindDelivered && r.IsGroup() {
			return errors.New("no delivered receipts in groups")
		}
		if r.RefSeq < 0 {
			return errors.New("ref_seq must be >= 0")
		}
		if r.MsgID != "" || r.Body != nil || r.Type != "" || r.ClientMsgID != "" {
			return fmt.Errorf("%s record carries message fields", r.Kind)
		}
		return nil
	}
	return fmt.Errorf("unknown record kind %q", r.Kind)
}

// ValidClientMsgID checks a client_msg_id: 1..64 printable ASCII bytes.
func ValidClientMsgID(s string) error {
	if s == "" || len(s) > MaxClientMsgIDLen {
		return fmt.Errorf("client_msg_id must be 1..%d bytes", MaxClientMsgIDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return errors.New("client_msg_id must be printable ASCII without spaces")
		}
	}
	return nil
}

// ValidDeviceID checks a device id (same alphabet as user ids).
func ValidDeviceID(s string) error {
	if err := auth.ValidSubject(s); err != nil {
		return fmt.Errorf("device id: %w", err)
	}
	return nil
}

// ErrBodyTooLarge is wrapped when a body's encoding exceeds the limit.
var ErrBodyTooLarge = errors.New("message body too large")

// ErrBodyUTF8 is wrapped when a body's text is not valid UTF-8.
var ErrBodyUTF8 = errors.New("message body is not valid UTF-8")

// ValidBody checks a message's type and body.
func ValidBody(t protocol.MessageType, b *protocol.Body, maxBody int) error {
	if !t.Valid() {
		return fmt.Errorf("unknown message type %q", t)
	}
	if b == nil {
		return errors.New("body missing")
	}
	if err := ValidMentions(b.Mentions); err != nil {
		return err
	}
	for _, s := range []string{b.Text, b.URL, b.Name, b.MIME} {
		if !utf8.ValidString(s) {
			return ErrBodyUTF8
		}
	}
	enc, _ := json.Marshal(b)
	if len(enc) > maxBody {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, len(enc), maxBody)
	}
	if len(b.URL) > MaxURLLen || len(b.Name) > MaxNameLen || len(b.MIME) > MaxMIMELen {
		return errors.New("body url, name or mime too long")
	}
	if b.Size < 0 || b.DurationMs < 0 || b.Width < 0 || b.Height < 0 {
		return errors.New("body size, duration and dimensions must be >= 0")
	}
	if t == protocol.TypeText {
		if b.Text == "" {
			return errors.New("text message needs body.text")
		}
		if b.URL != "" {
			return errors.New("text message carries body.url")
		}
		return nil
	}
	if b.URL == "" {
		return fmt.Errorf("%s message needs body.url", t)
	}
	return nil
}

// ContentHash identifies a send's content for the idempotency check: the
// same (sender, client_msg_id) must come with the same hash.
func ContentHash(to string, t protocol.MessageType, b *protocol.Body) []byte {
	enc, _ := json.Marshal(struct {
		To   string               `json:"to"`
		Type protocol.MessageType `json:"type"`
		Body *protocol.Body       `json:"body"`
	}{to, t, b})
	h := sha256.Sum256(enc)
	return h[:]
}

// Event turns a record at seq into the Event devices see.
func (r *Record) Event(seq int64) protocol.Event {
	ev := protocol.Event{
		Kind:     r.Kind,
		ConvID:   r.ConvID,
		Seq:      seq,
		From:     r.From,
		RefSeq:   r.RefSeq,
		DeviceID: r.DeviceID,
		AtMs:     r.AtMs,
	}
	if r.Kind == protocol.KindMessage {
		ev.Message = &protocol.Message{
			MsgID:       r.MsgID,
			ClientMsgID: r.ClientMsgID,
			From:        r.From,
			To:          r.To(),
			Type:        r.Type,
			Body:        r.Body,
			SentAtMs:    r.AtMs,
		}
	}
	ev.Group = r.Group
	return ev
}
