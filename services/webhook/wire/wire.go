// Package wire is the webhook contract between imcluster and a business
// back end: the JSON bodies, the headers and the signature. It has no
// dependencies beyond services/protocol so that pkg/sdk can share it.
//
// Every webhook request is a POST with a JSON body and these headers:
//
//	X-IM-Event            the event type (before_send, after_send, ...)
//	X-IM-Timestamp        unix seconds when the request was signed
//	X-IM-Signature        v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//	Idempotency-Key       stable per event (asynchronous events only)
//	X-IM-Delivery-Attempt 1, 2, ... (asynchronous events only)
//
// A receiver verifies the signature over the exact body bytes and refuses
// a timestamp outside its tolerance (Verify), and de-duplicates by
// Idempotency-Key: asynchronous events are delivered at least once.
package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// Headers of a webhook request.
const (
	HeaderEvent          = "X-IM-Event"
	HeaderTimestamp      = "X-IM-Timestamp"
	HeaderSignature      = "X-IM-Signature"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderAttempt        = "X-IM-Delivery-Attempt"
)

// EventBeforeSend is the synchronous event's type.
const EventBeforeSend = "before_send"

// Event is the body of an asynchronous webhook request. Which fields are
// set depends on Type:
//
//	after_send       ConvID, Seq, From, To, Message
//	offline_message  ConvID, Seq, From, To, UserID (the recipient), Message
//	after_read       ConvID, Seq (of the read record), UserID (the reader), RefSeq (read up to)
//	after_recall     ConvID, Seq (of the recall record), From (who recalled), RefSeq (the recalled message)
//	user_online      UserID, DeviceID, Terminal (the session that made the user online)
//	user_offline     UserID, DeviceID, Terminal (the last session that went)
type Event struct {
	Type string `json:"type"`
	// ID is the event's idempotency key (also the Idempotency-Key header):
	// the same event delivered twice carries the same ID.
	ID       string            `json:"id"`
	AtMs     int64             `json:"at_ms"`
	ConvID   string            `json:"conv_id,omitempty"`
	Seq      int64             `json:"seq,omitempty"`
	From     string            `json:"from,omitempty"`
	To       string            `json:"to,omitempty"`
	UserID   string            `json:"user_id,omitempty"`
	DeviceID string            `json:"device_id,omitempty"`
	Terminal string            `json:"terminal,omitempty"`
	RefSeq   int64             `json:"ref_seq,omitempty"`
	Message  *protocol.Message `json:"message,omitempty"`
}

// BeforeSend is the body of a before_send request: a send that was
// authenticated and validated, before it is produced to the log.
type BeforeSend struct {
	Type        string               `json:"type"` // before_send
	MsgID       string               `json:"msg_id"`
	ConvID      string               `json:"conv_id"`
	From        string               `json:"from"`
	DeviceID    string               `json:"device_id,omitempty"`
	To          string               `json:"to"`
	ClientMsgID string               `json:"client_msg_id"`
	MessageType protocol.MessageType `json:"message_type"`
	Body        *protocol.Body       `json:"body"`
	// Attempt is the client's attempt number (0 or 1: first). A retry of
	// a send is asked again: the answer should be the same for the same
	// msg_id and content (docs/webhooks.md).
	Attempt int   `json:"attempt,omitempty"`
	AtMs    int64 `json:"at_ms"`
}

// Actions of a before_send answer.
const (
	ActionAllow   = "allow"
	ActionRefuse  = "refuse"
	ActionReplace = "replace"
)

// BeforeSendAnswer is the 200 answer to before_send. Reason (refuse) is
// the business's code, shown to the client in the error answer's reason
// field; it must pass ValidReason.
type BeforeSendAnswer struct {
	Action  string         `json:"action"`
	Reason  string         `json:"reason,omitempty"`
	Message string         `json:"message,omitempty"`
	Body    *protocol.Body `json:"body,omitempty"` // replace: the new body (same message type)
}

// ValidReason checks a refusal reason: 1..64 of [a-z0-9_.-].
func ValidReason(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("reason must be 1..64 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return errors.New("reason must be of [a-z0-9_.-]")
		}
	}
	return nil
}

// Signature returns the X-IM-Signature value of body signed at ts.
func Signature(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing signature or timestamp")
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: timestamp outside tolerance")
)

// DefaultTolerance is the accepted clock difference between the signer and
// the receiver.
const DefaultTolerance = 5 * time.Minute

// Verify checks a request's signature header (one or more
// comma-separated v1= values, so a receiver rotating secrets can be
// sent both) and timestamp header against any of secrets, at now with
// tolerance (0: DefaultTolerance).
func Verify(secrets [][]byte, tsHeader, sigHeader string, body []byte, now time.Time, tolerance time.Duration) error {
	if tsHeader == "" || sigHeader == "" {
		return ErrNoSignature
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp %q", ErrNoSignature, tsHeader)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	for _, secret := range secrets {
		want := Signature(secret, ts, body)
		for _, got := range strings.Split(sigHeader, ",") {
			if hmac.Equal([]byte(strings.TrimSpace(got)), []byte(want)) {
				return nil
			}
		}
	}
	return ErrBadSignature
}
