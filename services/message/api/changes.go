package api

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// SeqRequest is the body of read and recall.
type SeqRequest struct {
	Seq *int64 `json:"seq"`
}

// ReadResponse answers a read.
type ReadResponse struct {
	ReadSeq int64 `json:"read_seq"`
	// Changed is false when the cursor was already at or past seq (no event).
	Changed  bool   `json:"changed"`
	EventSeq *int64 `json:"event_seq,omitempty"` // seq of the read event
}

func readSeq(r *http.Request) (int64, *apiError) {
	var req SeqRequest
	if e := readJSON(r, smallBodyLimit, &req); e != nil {
		return 0, e
	}
	if req.Seq == nil {
		return 0, badRequest(protocol.ErrMissingField, errNoSeq.Error())
	}
	if *req.Seq < 0 || *req.Seq > model.MaxSeq {
		return 0, badRequest(protocol.ErrInvalidField, "seq out of range")
	}
	return *req.Seq, nil
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) *apiError {
	c, conv, e := s.authConversation(r)
	if e != nil {
		return e
	}
	seq, e := readSeq(r)
	if e != nil {
		return e
	}
	st, ok, err := s.Store.Conversation(r.Context(), c.user, conv)
	if err != nil {
		return unavailable(err)
	}
	if !ok || st.LastMsgSeq < 0 {
		return errf(http.StatusNotFound, protocol.ErrNotFound, "no messages in this conversation")
	}
	if seq > st.LastSeq {
		return badRequest(protocol.ErrInvalidField, fmt.Sprintf("seq %d is beyond the conversation's last seq %d", seq, st.LastSeq))
	}
	if seq <= st.ReadSeq {
		writeJSON(w, http.StatusOK, ReadResponse{ReadSeq: st.ReadSeq})
		return nil
	}
	rec := model.Record{Kind: protocol.KindRead, ConvID: conv, From: c.user, DeviceID: c.device, AtMs: s.Now().UnixMilli(), RefSeq: seq}
	_, off, err := s.produce(&rec)
	if err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, ReadResponse{ReadSeq: seq, Changed: true, EventSeq: &off})
	return nil
}

// RecallResponse answers a recall.
type RecallResponse struct {
	Seq      int64  `json:"seq"`
	EventSeq *int64 `json:"event_seq,omitempty"` // seq of the recall event; absent if already recalled
}

func (s *Server) recall(w http.ResponseWriter, r *http.Request) *apiError {
	c, conv, e := s.authConversation(r)
	if e != nil {
		return e
	}
	seq, e := readSeq(r)
	if e != nil {
		return e
	}
	ev, ok, err := s.Store.Message(r.Context(), conv, seq)
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return errf(http.StatusNotFound, protocol.ErrNotFound, "no message at this seq")
	}
	if ev.Message.From != c.user {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the sender can recall a message")
	}
	if ev.Message.Recalled {
		writeJSON(w, http.StatusOK, RecallResponse{Seq: seq})
		return nil
	}
	now := s.Now().UnixMilli()
	if now-ev.Message.SentAtMs > s.RecallWindow.Milliseconds() {
		return errf(http.StatusForbidden, protocol.ErrRecallExpired, fmt.Sprintf("recall window of %s has passed", s.RecallWindow))
	}
	rec := model.Record{Kind: protocol.KindRecall, ConvID: conv, From: c.user, DeviceID: c.device, AtMs: now, RefSeq: seq}
	_, off, err := s.produce(&rec)
	if err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, RecallResponse{Seq: seq, EventSeq: &off})
	return nil
}

// DeliveredResponse answers the push tier's delivered acks.
type DeliveredResponse struct {
	Records int `json:"records"` // delivered records produced after coalescing
}

func (s *Server) delivered(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, false)
	if e != nil {
		return e
	}
	if c.p.Kind != auth.KindInternal {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "internal token required")
	}
	var req protocol.DeliveredBatch
	if e := readJSON(r, maxAcks*512, &req); e != nil {
		return e
	}
	if len(req.Acks) == 0 {
		return badRequest(protocol.ErrMissingField, "acks is required")
	}
	if len(req.Acks) > maxAcks {
		return errf(http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, fmt.Sprintf("at most %d acks", maxAcks))
	}
	type key struct{ conv, user string }
	best := map[key]protocol.DeliveredAck{}
	for i, a := range req.Acks {
		if _, ok := model.Peer(a.ConvID, a.UserID); !ok {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: user %q is not in conversation %q", i, a.UserID, a.ConvID))
		}
		if a.DeviceID != "" && model.ValidDeviceID(a.DeviceID) != nil {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: bad device id", i))
		}
		if a.Seq < 0 || a.Seq > model.MaxSeq {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: seq out of range", i))
		}
		k := key{a.ConvID, a.UserID}
		if b, ok := best[k]; !ok || a.Seq > b.Seq {
			best[k] = a
		}
	}
	acks := make([]protocol.DeliveredAck, 0, len(best))
	for _, a := range best {
		acks = append(acks, a)
	}
	slices.SortFunc(acks, func(a, b protocol.DeliveredAck) int {
		return cmp.Or(cmp.Compare(a.ConvID, b.ConvID), cmp.Compare(a.UserID, b.UserID))
	})
	now := s.Now().UnixMilli()
	var g errgroup.Group
	g.SetLimit(32)
	for _, a := range acks {
		g.Go(func() error {
			rec := model.Record{Kind: protocol.KindDelivered, ConvID: a.ConvID, From: a.UserID, DeviceID: a.DeviceID, AtMs: now, RefSeq: a.Seq}
			_, _, err := s.produce(&rec)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, DeliveredResponse{Records: len(acks)})
	return nil
}
