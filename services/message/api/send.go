package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// SendRequest is the body of POST /v1/messages (defined in package protocol,
// shared with pkg/client).
type SendRequest = protocol.SendRequest

// SendResponse answers a send (defined in package protocol).
type SendResponse = protocol.SendResponse

// validTarget checks where a send goes: a peer (to) or a group (group_id).
func validTarget(user string, req *SendRequest) *apiError {
	switch {
	case req.To != "" && req.GroupID != "":
		return badRequest(protocol.ErrInvalidField, "set to or group_id, not both")
	case req.GroupID != "":
		if err := model.ValidGroupID(req.GroupID); err != nil {
			return badRequest(protocol.ErrInvalidField, "group_id: "+err.Error())
		}
		return nil
	case req.Body != nil && len(req.Body.Mentions) > 0:
		return badRequest(protocol.ErrInvalidField, "mentions are for group messages")
	case req.To == "":
		return badRequest(protocol.ErrMissingField, "to is required")
	case auth.ValidSubject(req.To) != nil:
		return badRequest(protocol.ErrInvalidField, "to: "+auth.ValidSubject(req.To).Error())
	case req.To == user:
		return badRequest(protocol.ErrInvalidField, "to: cannot send to yourself")
	}
	return nil
}

func (s *Server) validateSend(user string, req *SendRequest) *apiError {
	if e := validTarget(user, req); e != nil {
		return e
	}
	switch {
	case req.ClientMsgID == "":
		return badRequest(protocol.ErrMissingField, "client_msg_id is required")
	case model.ValidClientMsgID(req.ClientMsgID) != nil:
		return badRequest(protocol.ErrInvalidField, model.ValidClientMsgID(req.ClientMsgID).Error())
	case req.Type == "":
		return badRequest(protocol.ErrMissingField, "type is required")
	case req.Body == nil:
		return badRequest(protocol.ErrMissingField, "body is required")
	}
	if err := model.ValidBody(req.Type, req.Body, s.MaxMessageBytes); err != nil {
		switch {
		case errors.Is(err, model.ErrBodyTooLarge):
			return errf(http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, err.Error())
		case errors.Is(err, model.ErrBodyUTF8):
			return badRequest(protocol.ErrInvalidUTF8, err.Error())
		}
		return badRequest(protocol.ErrInvalidField, err.Error())
	}
	return nil
}

// HeaderAttempt carries SendRequest.Attempt for clients that cannot add a
// body field (the body field wins when both are set).
const HeaderAttempt = "Idempotency-Attempt"

// retryReadTimeout bounds a retry's read of its stored message: the send
// must not wait on a slow or absent Cassandra (it produces instead).
const retryReadTimeout = time.Second

// send is log-first: authenticate → validate → produce (acks=all) →
// answer. A first attempt touches nothing but Kafka. A retry (attempt > 1)
// may pay one plain read to find its stored message and answer with it
// (or 409 for other content); when the read finds nothing or fails, the
// retry is produced again and the pipeline keeps the first copy in log
// order (services/message/pipeline/dedupe.go).
func (s *Server) send(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	var req SendRequest
	if e := readJSON(r, s.MaxMessageBytes+envelopeBytes, &req); e != nil {
		return e
	}
	if e := s.validateSend(c.user, &req); e != nil {
		return e
	}
	attempt, e := sendAttempt(r, req.Attempt)
	if e != nil {
		return e
	}
	conv, target := model.ConvID(c.user, req.To), req.To
	if req.GroupID != "" {
		conv, target = model.GroupConvID(req.GroupID), model.GroupConvID(req.GroupID)
		if e := s.checkGroupSend(r.Context(), req.GroupID, c.user, req.Body); e != nil {
			return e
		}
	}
	msgID := model.MessageID(c.user, req.ClientMsgID)
	if s.Gate != nil { // before_send (gate.go); before the retry lookup, whose hash is of the final body
		if done, e := s.beforeSend(w, r, c.user, c.device, conv, msgID, attempt, &req); done || e != nil {
			return e
		}
	}
	resp := SendResponse{MsgID: msgID, ConvID: conv, SentAtMs: s.Now().UnixMilli()}
	retry := attempt > 1
	if retry {
		found, e := s.storedCopy(r.Context(), msgID, model.ContentHash(target, req.Type, req.Body))
		if e != nil {
			return e
		}
		if found != nil {
			resp.Seq, resp.SentAtMs, resp.Duplicate = &found.Seq, found.AtMs, true
			mSends.WithLabelValues("retry_found").Inc()
			writeJSON(w, http.StatusOK, resp)
			return nil
		}
	}
	rec := model.Record{Kind: protocol.KindMessage, ConvID: conv, From: c.user, DeviceID: c.device, AtMs: resp.SentAtMs,
		MsgID: msgID, ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body, Retry: retry}
	t0 := time.Now()
	_, off, err := s.produce(&rec)
	mSendStage.WithLabelValues("produce").Observe(time.Since(t0).Seconds())
	if err != nil {
		return unavailable(err)
	}
	if retry {
		// This copy may land behind the first: its offset is not
		// necessarily the message's seq.
		mSends.WithLabelValues("retry_produced").Inc()
	} else {
		resp.Seq = &off
		mSends.WithLabelValues("first").Inc()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// sendAttempt reads the attempt number from the body or the header.
func sendAttempt(r *http.Request, body int) (int, *apiError) {
	n := body
	if h := r.Header.Get(HeaderAttempt); n == 0 && h != "" {
		v, err := strconv.Atoi(h)
		if err != nil {
			return 0, badRequest(protocol.ErrInvalidField, HeaderAttempt+" must be a number")
		}
		n = v
	}
	if n < 0 || n > protocol.MaxAttempt {
		return 0, badRequest(protocol.ErrInvalidField, "attempt must be in [0, "+strconv.Itoa(protocol.MaxAttempt)+"]")
	}
	return n, nil
}

// storedCopy looks up a retry's stored message: nil when it is not stored
// (yet) or the store did not answer in time — the retry is then produced
// again — and 409 when the client_msg_id is stored with other content.
func (s *Server) storedCopy(ctx context.Context, msgID string, hash []byte) (*store.StoredID, *apiError) {
	ctx, cancel := context.WithTimeout(ctx, retryReadTimeout)
	defer cancel()
	t0 := time.Now()
	found, ok, err := s.Store.LookupMessageID(ctx, msgID)
	mSendStage.WithLabelValues("retry_lookup").Observe(time.Since(t0).Seconds())
	switch {
	case err != nil:
		s.Log.Debug("retry lookup failed; producing again", "msg_id", msgID, "err", err)
		return nil, nil
	case !ok:
		return nil, nil
	case !found.SameContent(hash):
		return nil, errf(http.StatusConflict, protocol.ErrIdempotencyClash, "client_msg_id was used for different content")
	}
	return &found, nil
}

func (s *Server) produce(rec *model.Record) (int32, int64, error) {
	v, err := rec.Encode()
	if err != nil {
		return 0, 0, err
	}
	part, off, err := s.Producer.Produce(rec.ConvID, v)
	if err == nil && s.logEnds != nil {
		s.logEnds.observe(part, off+1) // acked with acks=all: below the log end
	}
	return part, off, err
}
