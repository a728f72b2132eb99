package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// The API's membership checks. They refuse early and cheaply what the
// pipeline would refuse anyway; the pipeline's check at the record's place
// in the log is the one that counts (pipeline/groups.go). A group's state
// is cached briefly and trusted only to say yes: a "no" is read again, so a
// member just added is never refused by a stale cache. A removed member
// may get through for up to memberCacheTTL; the pipeline then rejects the
// send to its sender (a rejected event with reason not_member).

const (
	memberCacheTTL  = 5 * time.Second
	memberCacheSize = 10000
)

type cachedGroup struct {
	g   *store.GroupState
	exp time.Time
}

type memberCache struct {
	mu sync.Mutex
	m  map[string]cachedGroup
}

func (c *memberCache) get(g string, now time.Time) *store.GroupState {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[g]
	if !ok || now.After(e.exp) {
		return nil
	}
	return e.g
}

func (c *memberCache) put(g *store.GroupState, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedGroup{}
	}
	if len(c.m) >= memberCacheSize {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[g.ID] = cachedGroup{g, now.Add(memberCacheTTL)}
}

// loadGroup reads a group's state (and refreshes the cache).
func (s *Server) loadGroup(ctx context.Context, gid string) (*store.GroupState, *apiError) {
	g, err := s.Store.LoadGroup(ctx, gid)
	if err != nil {
		return nil, unavailable(err)
	}
	s.members.put(g, s.Now())
	return g, nil
}

// groupMember returns group gid's state and user's row in it, or the
// answer for a non-member: 404 for a group that does not exist, 403
// otherwise (a dissolved group still answers its members' reads).
func (s *Server) groupMember(ctx context.Context, gid, user string) (*store.GroupState, store.MemberState, *apiError) {
	if g := s.members.get(gid, s.Now()); g != nil {
		if m, ok := g.Member(user); ok {
			return g, m, nil
		}
	}
	g, e := s.loadGroup(ctx, gid)
	if e != nil {
		return nil, store.MemberState{}, e
	}
	if !g.Exists() {
		return nil, store.MemberState{}, errf(http.StatusNotFound, protocol.ErrNotFound, "no such group")
	}
	m, ok := g.Member(user)
	if !ok {
		return g, m, errf(http.StatusForbidden, protocol.ErrNotMember, "not a member of this group")
	}
	return g, m, nil
}

// checkGroupSend refuses a send into a group the sender is not (known to
// be) a member of. When the store cannot answer, the send goes on: sends
// stay log-first while Cassandra is down, and the pipeline decides.
func (s *Server) checkGroupSend(ctx context.Context, gid, user string, body *protocol.Body) *apiError {
	g, m, e := s.groupMember(ctx, gid, user)
	switch {
	case e != nil && e.code == protocol.ErrUnavailable:
		return nil
	case e != nil:
		return e
	case g.Dissolved():
		return errf(http.StatusGone, protocol.ErrGroupDissolved, "the group was dissolved")
	case model.MentionsAll(body) && !m.Role.CanManage():
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the owner and admins may mention all")
	}
	return nil
}

// groupConversation checks that user is a member of the group of conv.
func (s *Server) groupConversation(ctx context.Context, conv, user string) (store.MemberState, *apiError) {
	gid, err := model.ParseGroupConv(conv)
	if err != nil {
		return store.MemberState{}, badRequest(protocol.ErrInvalidField, err.Error())
	}
	_, m, e := s.groupMember(ctx, gid, user)
	return m, e
}
