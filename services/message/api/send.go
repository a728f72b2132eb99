package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

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

func (s *Server) validateSend(user string, req *SendRequest) *apiError {
	switch {
	case req.To == "":
		return badRequest(protocol.ErrMissingField, "to is required")
	case auth.ValidSubject(req.To) != nil:
		return badRequest(protocol.ErrInvalidField, "to: "+auth.ValidSubject(req.To).Error())
	case req.To == user:
		return badRequest(protocol.ErrInvalidField, "to: cannot send to yourself")
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
	conv := model.ConvID(c.user, req.To)
	hash := model.ContentHash(req.To, req.Type, req.Body)
	id, err := uuid.NewV7()
	if err != nil {
		return errf(http.StatusInternalServerError, protocol.ErrInternal, err.Error())
	}
	now := s.Now().UnixMilli()
	t0 := time.Now()
	row, first, err := s.Store.ClaimIdempotency(r.Context(), c.user, req.ClientMsgID,
		store.Idem{MsgID: id.String(), ConvID: conv, Hash: hash, CreatedMs: now})
	mSendStage.WithLabelValues("claim").Observe(time.Since(t0).Seconds())
	if err != nil {
		return unavailable(err)
	}
	if !first && !row.SameContent(hash) {
		return errf(http.StatusConflict, protocol.ErrIdempotencyClash, "client_msg_id was used for different content")
	}
	resp := SendResponse{MsgID: row.MsgID, ConvID: row.ConvID, SentAtMs: row.CreatedMs, Duplicate: !first}
	leaseLeft := s.IdemLease.Milliseconds() - (now - row.CreatedMs) // of the first attempt
	if !first && !row.Produced && leaseLeft > 0 {
		// The first attempt may be recording its offset right now (it
		// answers before recording): look again for a moment.
		row = s.awaitProduced(r.Context(), c.user, req.ClientMsgID, row)
	}
	if !first {
		switch {
		case row.Produced:
			resp.Seq = &row.Off
			writeJSON(w, http.StatusOK, resp)
			return nil
		case leaseLeft > 0:
			w.Header().Set("Retry-After", strconv.FormatInt(leaseLeft/1000+1, 10))
			return errf(http.StatusServiceUnavailable, protocol.ErrUnavailable,
				"an earlier attempt with this client_msg_id is still in progress; retry later")
		}
	}
	// First attempt, or a retry whose first attempt's outcome stays
	// unknown past the lease: produce (again). The pipeline de-duplicates
	// Retry records against the conversation's messages.
	rec := model.Record{Kind: protocol.KindMessage, ConvID: row.ConvID, From: c.user, DeviceID: c.device, AtMs: row.CreatedMs,
		MsgID: row.MsgID, ClientMsgID: req.ClientMsgID, Type: req.Type, Body: req.Body, Retry: !first}
	t0 = time.Now()
	part, off, err := s.produce(&rec)
	mSendStage.WithLabelValues("produce").Observe(time.Since(t0).Seconds())
	if err != nil {
		return unavailable(err)
	}
	if !first {
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	// Answer first, then record the offset for retries (they wait for it
	// briefly, see awaitProduced): the ack does not wait for this write.
	resp.Seq = &off
	writeJSONNow(w, http.StatusOK, resp)
	t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), recordTimeout)
	defer cancel()
	if err := s.Store.SetProduced(ctx, c.user, req.ClientMsgID, part, off); err != nil {
		// The record is in the log; a later retry waits out the lease and
		// the pipeline de-duplicates it.
		s.Log.Warn("could not record produced offset", "err", err)
	}
	mSendStage.WithLabelValues("record_offset").Observe(time.Since(t0).Seconds())
	return nil
}

// recordTimeout bounds recording the produced offset after the answer.
const recordTimeout = 5 * time.Second

// awaitProduced re-reads the idempotency row, until the first attempt has
// recorded where its record landed or could no longer be doing so. A read
// that fails (a transient Cassandra error; reads are safe to repeat) is
// made again within the same deadline: giving up at it would send the
// client away for the rest of the lease although its ack is recorded.
func (s *Server) awaitProduced(ctx context.Context, sender, cmid string, row store.Idem) store.Idem {
	deadline := time.Now().Add(recordTimeout + time.Second)
	for wait := 10 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			return row
		case <-time.After(wait):
		}
		again, err := s.Store.ReadIdempotency(ctx, sender, cmid)
		if err == nil && again.Produced {
			return again
		}
	}
	return row
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
