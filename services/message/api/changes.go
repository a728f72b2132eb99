package api

import (
	"cmp"
	"fmt"
	"maps"
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
	if !ok || st.LastMsgSeq < 0 || seq > st.LastSeq {
		// The row may trail a pushed event: the history decides.
		has, err := s.Store.TimelineHas(r.Context(), conv, seq)
		if err != nil {
			return unavailable(err)
		}
		switch {
		case has:
		case !ok || st.LastMsgSeq < 0:
			return errf(http.StatusNotFound, protocol.ErrNotFound, "no messages in this conversation")
		default:
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("seq %d is beyond the conversation's last seq %d", seq, st.LastSeq))
		}
	}
	if ok && seq <= st.ReadSeq {
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
	// In a group, the owner and admins recall any message at any time
	// (moderation); everyone else only their own, within the window.
	moderator := false
	if model.IsGroupConv(conv) {
		m, e := s.groupConversation(r.Context(), conv, c.user)
		if e != nil {
			return e
		}
		moderator = m.Role.CanManage()
	}
	if ev.Kind != protocol.KindMessage || (ev.Message.From != c.user && !moderator) {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the sender can recall a message")
	}
	if ev.Message.Recalled {
		writeJSON(w, http.StatusOK, RecallResponse{Seq: seq})
		return nil
	}
	now := s.Now().UnixMilli()
	if !moderator && now-ev.Message.SentAtMs > s.RecallWindow.Milliseconds() {
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

// delivered turns the push tier's acks into delivered records, without a
// read: acks are coalesced per (conversation, user, device) to the highest
// seq, and each becomes one record. The pipeline, the partition's single
// writer, keeps a record only if it acknowledges a message sent before it
// (pipeline/receipts.go); an ack beyond the conversation's last message is
// dropped there, alone — another device's ack is its own record. A stale
// or duplicate ack is harmless (peer_delivered_seq is a max-register).
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
	type key struct{ conv, user, device string }
	highest := map[key]int64{}
	for i, a := range req.Acks {
		if model.IsGroupConv(a.ConvID) {
			continue // groups have no delivered receipts (an older push node may still send them)
		}
		if _, ok := model.Peer(a.ConvID, a.UserID); !ok {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: user %q is not in conversation %q", i, a.UserID, a.ConvID))
		}
		if a.DeviceID != "" && model.ValidDeviceID(a.DeviceID) != nil {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: bad device id", i))
		}
		if a.Seq < 0 || a.Seq > model.MaxSeq {
			return badRequest(protocol.ErrInvalidField, fmt.Sprintf("acks[%d]: seq out of range", i))
		}
		k := key{a.ConvID, a.UserID, a.DeviceID}
		if seq, ok := highest[k]; !ok || a.Seq > seq {
			highest[k] = a.Seq
		}
	}
	keys := slices.SortedFunc(maps.Keys(highest), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.conv, b.conv), cmp.Compare(a.user, b.user), cmp.Compare(a.device, b.device))
	})
	now := s.Now().UnixMilli()
	g := errgroup.Group{}
	g.SetLimit(32)
	for _, k := range keys {
		rec := model.Record{Kind: protocol.KindDelivered, ConvID: k.conv, From: k.user, DeviceID: k.device, AtMs: now, RefSeq: highest[k]}
		g.Go(func() error {
			_, _, err := s.produce(&rec)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, DeliveredResponse{Records: len(keys)})
	return nil
}
