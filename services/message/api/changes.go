package api

import (
	"cmp"
	"context"
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
	// Ignored counts the acks refused because their seq is beyond the
	// highest message seq of the user's conversation (or the user has no
	// message in it): they were never messages to this user and must not
	// produce a receipt. The other acks of the batch still count.
	Ignored int `json:"ignored"`
}

// delivered turns the push tier's acks into delivered records. Acks are
// grouped per (conversation, user); each group costs one point read of the
// user's conversation row and produces at most one record: the highest
// acked seq that is not beyond the conversation's last message (an ack
// beyond it is ignored, never clamped: a device cannot have received a
// message that does not exist). A stale or duplicate ack is harmless
// (peer_delivered_seq is a max-register) and still produced.
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
	groups := map[key][]protocol.DeliveredAck{}
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
		k := key{a.ConvID, a.UserID}
		groups[k] = append(groups[k], a)
	}
	keys := slices.SortedFunc(maps.Keys(groups), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.conv, b.conv), cmp.Compare(a.user, b.user))
	})
	now := s.Now().UnixMilli()
	ignored := make([]int, len(keys)) // per group
	produced := make([]bool, len(keys))
	g, ctx := errgroup.WithContext(r.Context())
	g.SetLimit(32)
	for i, k := range keys {
		g.Go(func() error {
			best, n, err := s.bestAck(ctx, k.user, k.conv, groups[k])
			ignored[i] = n
			if err != nil || best == nil {
				return err
			}
			rec := model.Record{Kind: protocol.KindDelivered, ConvID: k.conv, From: k.user, DeviceID: best.DeviceID, AtMs: now, RefSeq: best.Seq}
			if _, _, err := s.produce(&rec); err != nil {
				return err
			}
			produced[i] = true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return unavailable(err)
	}
	var resp DeliveredResponse
	for i := range keys {
		resp.Ignored += ignored[i]
		if produced[i] {
			resp.Records++
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// bestAck returns the highest of one (conversation, user)'s acks that is
// not beyond the conversation's last message, and how many were ignored as
// beyond it. The user's conversation row says where the last message is,
// but it trails the pushes (the pipeline writes it after routing), so the
// highest ack beyond it is checked in the history (one point read) before
// it is ignored.
func (s *Server) bestAck(ctx context.Context, user, conv string, acks []protocol.DeliveredAck) (*protocol.DeliveredAck, int, error) {
	st, ok, err := s.Store.Conversation(ctx, user, conv)
	if err != nil {
		return nil, 0, err
	}
	last := int64(-1) // no message: every ack is beyond it
	if ok {
		last = st.LastMsgSeq
	}
	top := slices.MaxFunc(acks, func(a, b protocol.DeliveredAck) int { return cmp.Compare(a.Seq, b.Seq) })
	if top.Seq > last {
		has, err := s.Store.TimelineHas(ctx, conv, top.Seq)
		if err != nil {
			return nil, 0, err
		}
		if has {
			last = top.Seq
		}
	}
	var best *protocol.DeliveredAck
	ignored := 0
	for j, a := range acks {
		switch {
		case a.Seq > last:
			ignored++
		case best == nil || a.Seq > best.Seq:
			best = &acks[j]
		}
	}
	return best, ignored, nil
}
