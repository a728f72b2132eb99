package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// ConvLister is the conversation list's part of the store (store.Store
// implements it; a Store without it answers the list in the legacy
// conv_id order and refuses pin/mute with 503).
type ConvLister interface {
	ConversationList(ctx context.Context, user string, cur store.ListCursor, limit int) (store.ListPage, error)
	SetConvFlags(ctx context.Context, user, conv string, pinned, muted *bool) error
}

// ConversationsResponse is one page of GET /v1/conversations: the caller's
// conversations, pinned first, then by last activity, newest first (see
// store/convlist.go for what a walk guarantees while conversations get
// new messages).
type ConversationsResponse struct {
	Conversations []store.ConvListEntry `json:"conversations"`
	// NextCursor (opaque) continues the walk as ?cursor=; set with HasMore.
	NextCursor string `json:"next_cursor,omitempty"`
	HasMore    bool   `json:"has_more"`
	// After is the same as NextCursor, for clients that page with
	// ?after= (before the list had an order it was the last conv_id; an
	// ?after= holding a conversation id still lists in conv_id order).
	After string `json:"after,omitempty"`
}

// legacyConversationsResponse is the conv_id-ordered answer to ?after=<conv_id>.
type legacyConversationsResponse struct {
	Conversations []store.ConvState `json:"conversations"`
	After         string            `json:"after,omitempty"`
}

func (s *Server) conversations(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	q := r.URL.Query()
	raw, after := q.Get("cursor"), q.Get("after")
	if raw != "" && after != "" {
		return badRequest(protocol.ErrInvalidField, "cursor and after: give one")
	}
	cl, ok := s.Store.(ConvLister)
	if strings.Contains(after, ":") || !ok {
		return s.conversationsByID(w, r, c.user, after)
	}
	if raw == "" {
		raw = after
	}
	limit, e := queryInt(r, "limit", DefaultPage, 1, MaxPage)
	if e != nil {
		return e
	}
	cur, err := store.DecodeListCursor(raw)
	if err != nil {
		return badRequest(protocol.ErrInvalidField, "cursor: "+err.Error())
	}
	page, err := cl.ConversationList(r.Context(), c.user, cur, int(limit))
	if err != nil {
		return unavailable(err)
	}
	resp := ConversationsResponse{Conversations: page.Conversations, HasMore: page.More}
	if resp.Conversations == nil {
		resp.Conversations = []store.ConvListEntry{}
	}
	if page.More {
		resp.NextCursor = page.Next.Encode()
		resp.After = resp.NextCursor
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// conversationsByID is the list before it had an order: conv_id order,
// ?after=<conv_id>.
func (s *Server) conversationsByID(w http.ResponseWriter, r *http.Request, user, after string) *apiError {
	limit, e := queryInt(r, "limit", MaxPage, 1, MaxPage)
	if e != nil {
		return e
	}
	if len(after) > 200 {
		return badRequest(protocol.ErrInvalidField, "after too long")
	}
	list, err := s.Store.Conversations(r.Context(), user, after, false, int(limit))
	if err != nil {
		return unavailable(err)
	}
	resp := legacyConversationsResponse{Conversations: list}
	if resp.Conversations == nil {
		resp.Conversations = []store.ConvState{}
	}
	if len(list) == int(limit) {
		resp.After = list[len(list)-1].ConvID
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// ConvSettings is the body of PATCH /v1/conversations/{conv} (absent
// fields are left as they are) and its answer.
type ConvSettings struct {
	Pinned *bool `json:"pinned,omitempty"`
	Muted  *bool `json:"muted,omitempty"`
}

func (s *Server) setConvSettings(w http.ResponseWriter, r *http.Request) *apiError {
	c, conv, e := s.authConversation(r)
	if e != nil {
		return e
	}
	var req ConvSettings
	if e := readJSON(r, smallBodyLimit, &req); e != nil {
		return e
	}
	if req.Pinned == nil && req.Muted == nil {
		return badRequest(protocol.ErrMissingField, "pinned or muted is required")
	}
	cl, ok := s.Store.(ConvLister)
	if !ok {
		return errf(http.StatusServiceUnavailable, protocol.ErrUnavailable, "conversation settings are not supported by this store")
	}
	err := cl.SetConvFlags(r.Context(), c.user, conv, req.Pinned, req.Muted)
	if errors.Is(err, store.ErrTooManyPinned) {
		return errf(http.StatusConflict, protocol.ErrInvalidField, fmt.Sprintf("pinned: at most %d pinned conversations", store.MaxPinned))
	}
	if err != nil {
		return unavailable(err)
	}
	writeJSON(w, http.StatusOK, req)
	return nil
}
