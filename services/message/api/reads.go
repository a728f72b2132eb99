package api

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// SyncResponse is one page of GET /v1/sync: events of the user's
// conversations after the cursor (per conversation in seq order), the
// conversations they belong to, and the cursor to continue from.
type SyncResponse struct {
	Events        []protocol.Event `json:"events"`
	Conversations []string         `json:"conversations"`
	NextCursor    string           `json:"next_cursor"`
	HasMore       bool             `json:"has_more"`
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	limit, e := queryInt(r, "limit", MaxPage, 1, MaxPage)
	if e != nil {
		return e
	}
	cur, err := model.DecodeSyncCursor(r.URL.Query().Get("cursor"), s.Partitions)
	if err != nil {
		return badRequest(protocol.ErrInvalidField, "cursor: "+err.Error())
	}
	if s.logEnds != nil {
		// A cursor ahead of the log (offsets restarted: topic re-created,
		// deployment restored) would silently miss every event below it.
		err := s.logEnds.check(r.Context(), cur)
		if errors.Is(err, errCursorAhead) {
			return errf(http.StatusGone, protocol.ErrCursorExpired, err.Error())
		}
		if err != nil {
			return unavailable(err)
		}
	}
	page, err := s.Store.Sync(r.Context(), c.user, cur, int(limit))
	if errors.Is(err, store.ErrCursorExpired) {
		// The device resyncs: unread pull (whose first page has a fresh
		// sync cursor), conversation list, history (docs/protocol.md).
		return errf(http.StatusGone, protocol.ErrCursorExpired, err.Error())
	}
	if err != nil {
		return unavailable(err)
	}
	resp := SyncResponse{Events: page.Events, NextCursor: page.Next.Encode(), HasMore: page.More, Conversations: []string{}}
	if resp.Events == nil {
		resp.Events = []protocol.Event{}
	}
	seen := map[string]bool{}
	for _, ev := range page.Events {
		if !seen[ev.ConvID] {
			seen[ev.ConvID] = true
			resp.Conversations = append(resp.Conversations, ev.ConvID)
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// UnreadResponse is one page of GET /v1/unread.
type UnreadResponse struct {
	Events     []protocol.Event `json:"events"`
	NextCursor string           `json:"next_cursor,omitempty"`
	HasMore    bool             `json:"has_more"`
	// SyncCursor (first page only) is a sync cursor taken before the walk
	// began: unread pull, then sync from it, misses nothing.
	SyncCursor string `json:"sync_cursor,omitempty"`
}

func (s *Server) unread(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	limit, e := queryInt(r, "limit", MaxPage, 1, MaxPage)
	if e != nil {
		return e
	}
	raw := r.URL.Query().Get("cursor")
	cur, err := model.DecodeUnreadCursor(raw)
	if err != nil {
		return badRequest(protocol.ErrInvalidField, "cursor: "+err.Error())
	}
	var resp UnreadResponse
	if raw == "" {
		// Every feed entry at or after the heads is stored after they are
		// read (the pipeline records a head after persisting below it):
		// the time before the read is the cursor's horizon.
		since := time.Now().UnixMilli()
		heads, err := s.Store.PersistedHeads(r.Context())
		if err != nil {
			return unavailable(err)
		}
		resp.SyncCursor = model.SyncCursor{Next: heads, SinceMs: since}.Encode()
	}
	page, err := s.Store.Unread(r.Context(), c.user, cur, int(limit))
	if err != nil {
		return unavailable(err)
	}
	resp.Events, resp.HasMore = page.Events, page.More
	if resp.Events == nil {
		resp.Events = []protocol.Event{}
	}
	if page.More {
		resp.NextCursor = page.Next.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// HistoryResponse is one page of GET /v1/conversations/{conv}/messages,
// newest first.
type HistoryResponse struct {
	Messages   []protocol.Event `json:"messages"`
	NextBefore *int64           `json:"next_before,omitempty"` // pass as ?before= for older ones
	HasMore    bool             `json:"has_more"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) *apiError {
	c, conv, e := s.authConversation(r)
	if e != nil {
		return e
	}
	from := int64(0) // a group member's history starts at their join
	if model.IsGroupConv(conv) {
		m, e := s.groupConversation(r.Context(), conv, c.user)
		if e != nil {
			return e
		}
		from = m.Joined
	}
	limit, e := queryInt(r, "limit", DefaultPage, 1, MaxPage)
	if e != nil {
		return e
	}
	before, e := queryInt(r, "before", model.MaxSeq, 0, model.MaxSeq)
	if e != nil {
		return e
	}
	msgs, more, err := s.Store.History(r.Context(), conv, before, int(limit))
	if err != nil {
		return unavailable(err)
	}
	if i := slices.IndexFunc(msgs, func(ev protocol.Event) bool { return ev.Seq < from }); i >= 0 {
		msgs, more = msgs[:i], false
	}
	resp := HistoryResponse{Messages: msgs, HasMore: more}
	if resp.Messages == nil {
		resp.Messages = []protocol.Event{}
	}
	if more {
		resp.NextBefore = &msgs[len(msgs)-1].Seq
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

var errNoSeq = errors.New("seq is required")
