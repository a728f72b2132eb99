package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// SendGate is the before_send check (services/webhook implements it): it
// sees an authenticated, validated send before it is produced and allows
// it, refuses it, or replaces its body. Server.Gate nil: no check, no cost.
//
// BeforeSend returns an error when the check could not be made (timeout,
// transport error, malformed answer); it must return within its own strict
// timeout. FailOpen says what a failed check means: true, the send goes on
// unchanged; false (fail-closed), it is answered 503 unavailable with
// Retry-After (nothing produced). An unusable replacement body counts as a
// failed check.
type SendGate interface {
	BeforeSend(ctx context.Context, in GateRequest) (GateDecision, error)
	FailOpen() bool
}

// GateRequest is what the gate sees of a send.
type GateRequest struct {
	MsgID, ConvID, From, DeviceID, To, ClientMsgID string
	Type                                           protocol.MessageType
	Body                                           *protocol.Body
	Attempt                                        int
	AtMs                                           int64
}

// GateDecision is the gate's answer: the zero value allows the send.
type GateDecision struct {
	// Refuse: the send is answered 403 with code ErrRefused and Reason in
	// the answer's reason field; nothing is produced.
	Refuse  bool
	Reason  string
	Message string
	// Body, if set, replaces the send's body (same message type); it is
	// validated like a client's.
	Body *protocol.Body
}

// ErrRefused is the stable error code of a send refused by before_send;
// the answer's reason field carries the business's own code.
const ErrRefused = "refused"

// RefusedError is the answer to a refused send: protocol.Error plus the
// business's reason code (also the start of Message, "<reason>: <text>",
// for clients that see only code and message: a send over the socket).
type RefusedError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// ErrGateInvalid is returned (wrapped) by a gate whose answer was not
// usable; the API treats it as the gate's failure.
var ErrGateInvalid = errors.New("before_send answer invalid")

var mGate = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "imcluster_message_before_send_seconds",
	Help:    "Time of the before_send check on the send path by outcome (allow, refuse, replace, failed_open, failed_closed).",
	Buckets: prometheus.ExponentialBuckets(0.00025, 1.5, 30),
}, []string{"outcome"})

// beforeSend runs the gate on a validated send. It returns done when it
// wrote the answer itself (a refusal), an error answer when the send must
// not go on, and otherwise may have replaced req.Body.
func (s *Server) beforeSend(w http.ResponseWriter, r *http.Request, from, device, conv, msgID string, attempt int, req *SendRequest) (bool, *apiError) {
	t0 := time.Now()
	d, err := s.Gate.BeforeSend(r.Context(), GateRequest{MsgID: msgID, ConvID: conv, From: from, DeviceID: device, To: req.To,
		ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body, Attempt: attempt, AtMs: s.Now().UnixMilli()})
	if err == nil && d.Body != nil {
		if verr := model.ValidBody(req.Type, d.Body, s.MaxMessageBytes); verr != nil {
			err = errors.Join(ErrGateInvalid, verr)
		}
	}
	switch {
	case err != nil && s.Gate.FailOpen():
		mGate.WithLabelValues("failed_open").Observe(time.Since(t0).Seconds())
		s.Log.Debug("before_send failed; send goes on (fail-open)", "msg_id", msgID, "err", err)
	case err != nil:
		mGate.WithLabelValues("failed_closed").Observe(time.Since(t0).Seconds())
		return false, errf(http.StatusServiceUnavailable, protocol.ErrUnavailable, "before_send check failed: "+err.Error())
	case d.Refuse:
		mGate.WithLabelValues("refuse").Observe(time.Since(t0).Seconds())
		// The message starts with the reason: a send over the socket gets
		// code and message only (the push node's send_result).
		msg := d.Reason
		if d.Message != "" {
			msg += ": " + d.Message
		}
		writeJSON(w, http.StatusForbidden, RefusedError{Code: ErrRefused, Message: msg, Reason: d.Reason})
		return true, nil
	case d.Body != nil:
		mGate.WithLabelValues("replace").Observe(time.Since(t0).Seconds())
		req.Body = d.Body
	default:
		mGate.WithLabelValues("allow").Observe(time.Since(t0).Seconds())
	}
	return false, nil
}
