package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// Group management. Every change is a record in the group's own log
// partition (like its messages), applied by the pipeline in log order, so
// devices see membership changes in order with the messages. The API
// checks permissions against the stored state (an early, clear refusal),
// produces the change, and answers once the pipeline has applied it (the
// partition's persisted head reached the record), so a client can read its
// own change; after applyWait it answers 202 with pending=true instead.
// The pipeline checks permissions again at the record's place in the log
// (concurrent changes) and, if it refuses, tells the actor's devices with
// a rejected event.

// applyWait bounds how long a change's answer waits for the pipeline.
const applyWait = 5 * time.Second

// GroupResponse answers a group change or read.
type GroupResponse struct {
	Group protocol.Group `json:"group"`
	// Pending is true when the change is in the log but was not yet
	// applied when the answer was written (it will be).
	Pending bool `json:"pending,omitempty"`
}

// CreateGroupRequest is the body of POST /v1/groups.
type CreateGroupRequest struct {
	// GroupID is optional: a business back end may bring its own id; one
	// is generated otherwise. Creating an existing id is idempotent for
	// the owner who created it (same name), 409 otherwise.
	GroupID string            `json:"group_id,omitempty"`
	Name    string            `json:"name"`
	Avatar  *string           `json:"avatar,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Members []string          `json:"members,omitempty"`
}

// UpdateGroupRequest is the body of PATCH /v1/groups/{group}.
type UpdateGroupRequest struct {
	Name   *string           `json:"name,omitempty"`
	Avatar *string           `json:"avatar,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// UsersRequest is the body of POST /v1/groups/{group}/members.
type UsersRequest struct {
	Users []string `json:"users"`
}

// RoleRequest is the body of PUT /v1/groups/{group}/members/{user}/role.
type RoleRequest struct {
	Role protocol.Role `json:"role"`
}

// MembersResponse is one page of GET /v1/groups/{group}/members.
type MembersResponse struct {
	Members []protocol.Member `json:"members"`
	After   string            `json:"after,omitempty"`
}

// GroupsResponse is one page of GET /v1/groups.
type GroupsResponse struct {
	Groups []store.UserGroup `json:"groups"`
	After  string            `json:"after,omitempty"`
}

const groupBodyLimit = 64 << 10

func (s *Server) maxGroupMembers() int {
	if s.MaxGroupMembers > 0 {
		return s.MaxGroupMembers
	}
	return config.DefaultGroupMaxMembers
}

func (s *Server) maxGroupsPerUser() int {
	if s.MaxGroupsPerUser > 0 {
		return s.MaxGroupsPerUser
	}
	return config.DefaultGroupMaxPerUser
}

// pathGroup reads and checks the path's group id.
func pathGroup(r *http.Request) (string, *apiError) {
	gid := r.PathValue("group")
	if err := model.ValidGroupID(gid); err != nil {
		return "", badRequest(protocol.ErrInvalidField, err.Error())
	}
	return gid, nil
}

// memberCaller authenticates a user request on the path's group and
// returns the caller, the group and the caller's row.
func (s *Server) memberCaller(r *http.Request) (caller, *store.GroupState, store.MemberState, *apiError) {
	c, e := s.authenticate(r, true)
	if e != nil {
		return c, nil, store.MemberState{}, e
	}
	gid, e := pathGroup(r)
	if e != nil {
		return c, nil, store.MemberState{}, e
	}
	g, e := s.loadGroup(r.Context(), gid) // fresh: permissions are checked on it
	if e != nil {
		return c, nil, store.MemberState{}, e
	}
	if !g.Exists() {
		return c, nil, store.MemberState{}, errf(http.StatusNotFound, protocol.ErrNotFound, "no such group")
	}
	m, ok := g.Member(c.user)
	if !ok {
		return c, nil, m, errf(http.StatusForbidden, protocol.ErrNotMember, "not a member of this group")
	}
	return c, g, m, nil
}

func newGroupID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	var req CreateGroupRequest
	if e := readJSON(r, groupBodyLimit, &req); e != nil {
		return e
	}
	if req.GroupID == "" {
		req.GroupID = newGroupID()
	}
	if err := model.ValidGroupID(req.GroupID); err != nil {
		return badRequest(protocol.ErrInvalidField, err.Error())
	}
	if req.Name == "" {
		return badRequest(protocol.ErrMissingField, "name is required")
	}
	if err := model.ValidGroupFields(&req.Name, req.Avatar, req.Attrs); err != nil {
		return badRequest(protocol.ErrInvalidField, err.Error())
	}
	users := slices.DeleteFunc(slices.Clone(req.Members), func(u string) bool { return u == c.user })
	if len(users) > 0 {
		if err := model.ValidUsers(users, model.MaxUsersPerChange); err != nil {
			return badRequest(protocol.ErrInvalidField, "members: "+err.Error())
		}
	}
	if 1+len(users) > s.maxGroupMembers() {
		return errf(http.StatusUnprocessableEntity, protocol.ErrLimitReached, fmt.Sprintf("a group has at most %d members", s.maxGroupMembers()))
	}
	g, e := s.loadGroup(r.Context(), req.GroupID)
	if e != nil {
		return e
	}
	if g.Exists() {
		if g.Owner == c.user && g.Name == req.Name && g.CreatedMs > 0 {
			writeJSON(w, http.StatusOK, GroupResponse{Group: g.Info()}) // a retried create
			return nil
		}
		return errf(http.StatusConflict, protocol.ErrExists, "group id is taken")
	}
	if e := s.checkGroupLimits(r.Context(), append([]string{c.user}, users...)); e != nil {
		return e
	}
	change := protocol.GroupChange{Op: protocol.GroupCreated, Users: append([]string{c.user}, users...), Name: &req.Name, Avatar: req.Avatar, Attrs: req.Attrs}
	return s.applyChange(w, r, c, req.GroupID, change, http.StatusCreated)
}

// checkGroupLimits refuses users who already belong to the most groups
// allowed. The check reads each user's list (concurrently); two creates
// racing for a user's last slot may both pass (the limit is a guard
// against abuse, not an invariant).
func (s *Server) checkGroupLimits(ctx context.Context, users []string) *apiError {
	max := s.maxGroupsPerUser()
	full := make([]bool, len(users))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, u := range users {
		g.Go(func() error {
			n, err := s.Store.CountUserGroups(gctx, u, max)
			full[i] = n >= max
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return unavailable(err)
	}
	for i, u := range users {
		if full[i] {
			return errf(http.StatusUnprocessableEntity, protocol.ErrLimitReached, fmt.Sprintf("user %s is in %d groups already", u, max))
		}
	}
	return nil
}

// applyChange produces a group change and answers once it is applied.
func (s *Server) applyChange(w http.ResponseWriter, r *http.Request, c caller, gid string, change protocol.GroupChange, status int) *apiError {
	rec := model.Record{Kind: protocol.KindGroup, ConvID: model.GroupConvID(gid), From: c.user, DeviceID: c.device,
		AtMs: s.Now().UnixMilli(), Group: &change}
	if err := rec.Validate(model.MaxBodyCeiling); err != nil {
		return badRequest(protocol.ErrInvalidField, err.Error())
	}
	part, off, err := s.produce(&rec)
	if err != nil {
		return unavailable(err)
	}
	applied := s.awaitApplied(r.Context(), part, off)
	resp := GroupResponse{Pending: !applied}
	g, e := s.loadGroup(r.Context(), gid)
	if e != nil || !g.Exists() {
		// The change is in the log; only the read failed or lags.
		resp.Group, resp.Pending = protocol.Group{GroupID: gid, ConvID: rec.ConvID}, true
	} else {
		resp.Group = g.Info()
	}
	resp.Group.Seq = &off
	if resp.Pending {
		status = http.StatusAccepted
	}
	writeJSON(w, status, resp)
	return nil
}

// awaitApplied waits (at most applyWait) until the pipeline persisted the
// partition up to off.
func (s *Server) awaitApplied(ctx context.Context, part int32, off int64) bool {
	ctx, cancel := context.WithTimeout(ctx, applyWait)
	defer cancel()
	wait := 5 * time.Millisecond
	for {
		if _, head, ok, err := s.Store.PartitionState(ctx, part); err == nil && ok && head >= off {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) *apiError {
	_, g, _, e := s.memberCaller(r)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, GroupResponse{Group: g.Info()})
	return nil
}

// managerCall authenticates a change to the path's group by its owner or
// an admin, and reads the request's body into dst (nil: no body).
func (s *Server) managerCall(r *http.Request, dst any) (caller, *store.GroupState, store.MemberState, *apiError) {
	c, g, m, e := s.memberCaller(r)
	if e == nil && dst != nil {
		e = readJSON(r, groupBodyLimit, dst)
	}
	if e == nil {
		e = manageable(g, m)
	}
	return c, g, m, e
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request) *apiError {
	var req UpdateGroupRequest
	c, g, _, e := s.managerCall(r, &req)
	if e != nil {
		return e
	}
	if req.Name == nil && req.Avatar == nil && req.Attrs == nil {
		return badRequest(protocol.ErrMissingField, "name, avatar or attrs is required")
	}
	if err := model.ValidGroupFields(req.Name, req.Avatar, req.Attrs); err != nil {
		return badRequest(protocol.ErrInvalidField, err.Error())
	}
	return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupUpdated, Name: req.Name, Avatar: req.Avatar, Attrs: req.Attrs}, http.StatusOK)
}

// manageable refuses a change by a plain member or to a dissolved group.
func manageable(g *store.GroupState, m store.MemberState) *apiError {
	switch {
	case g.Dissolved():
		return errf(http.StatusGone, protocol.ErrGroupDissolved, "the group was dissolved")
	case !m.Role.CanManage():
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the owner and admins manage the group")
	}
	return nil
}

func (s *Server) dissolveGroup(w http.ResponseWriter, r *http.Request) *apiError {
	c, g, m, e := s.managerCall(r, nil)
	if e != nil {
		return e
	}
	if m.Role != protocol.RoleOwner {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the owner dissolves the group")
	}
	return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupDissolved}, http.StatusOK)
}

func (s *Server) addMembers(w http.ResponseWriter, r *http.Request) *apiError {
	var req UsersRequest
	c, g, _, e := s.managerCall(r, &req)
	if e != nil {
		return e
	}
	if err := model.ValidUsers(req.Users, model.MaxUsersPerChange); err != nil {
		return badRequest(protocol.ErrInvalidField, "users: "+err.Error())
	}
	var added []string
	for _, u := range req.Users {
		if _, ok := g.Member(u); !ok {
			added = append(added, u)
		}
	}
	if len(added) == 0 {
		writeJSON(w, http.StatusOK, GroupResponse{Group: g.Info()}) // nothing to do
		return nil
	}
	if len(g.Current())+len(added) > s.maxGroupMembers() {
		return errf(http.StatusUnprocessableEntity, protocol.ErrLimitReached, fmt.Sprintf("a group has at most %d members", s.maxGroupMembers()))
	}
	if e := s.checkGroupLimits(r.Context(), added); e != nil {
		return e
	}
	return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupJoined, Users: added}, http.StatusOK)
}

// removeMember removes the path's user, or, when that is the caller,
// leaves the group (the owner cannot leave: transfer or dissolve first).
func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) *apiError {
	c, g, m, e := s.memberCaller(r)
	if e != nil {
		return e
	}
	target := r.PathValue("user")
	if err := auth.ValidSubject(target); err != nil {
		return badRequest(protocol.ErrInvalidField, "user: "+err.Error())
	}
	if g.Dissolved() {
		return errf(http.StatusGone, protocol.ErrGroupDissolved, "the group was dissolved")
	}
	if target == c.user {
		if m.Role == protocol.RoleOwner {
			return errf(http.StatusForbidden, protocol.ErrForbidden, "the owner cannot leave: transfer ownership or dissolve the group")
		}
		return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupLeft}, http.StatusOK)
	}
	t, ok := g.Member(target)
	switch {
	case !m.Role.CanManage():
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the owner and admins remove members")
	case !ok:
		return errf(http.StatusNotFound, protocol.ErrNotFound, "not a member")
	case t.Role == protocol.RoleOwner, t.Role == protocol.RoleAdmin && m.Role != protocol.RoleOwner:
		return errf(http.StatusForbidden, protocol.ErrForbidden, "admins remove members only; the owner cannot be removed")
	}
	return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupRemoved, Users: []string{target}}, http.StatusOK)
}

func (s *Server) setRole(w http.ResponseWriter, r *http.Request) *apiError {
	var req RoleRequest
	c, g, m, e := s.managerCall(r, &req)
	if e != nil {
		return e
	}
	target := r.PathValue("user")
	switch {
	case auth.ValidSubject(target) != nil:
		return badRequest(protocol.ErrInvalidField, "user: "+auth.ValidSubject(target).Error())
	case req.Role == "":
		return badRequest(protocol.ErrMissingField, "role is required")
	case !req.Role.Valid():
		return badRequest(protocol.ErrInvalidField, "role must be owner, admin or member")
	}
	if _, ok := g.Member(target); !ok || target == c.user {
		return errf(http.StatusNotFound, protocol.ErrNotFound, "not another member of the group")
	}
	if m.Role != protocol.RoleOwner {
		return errf(http.StatusForbidden, protocol.ErrForbidden, "only the owner changes roles")
	}
	return s.applyChange(w, r, c, g.ID, protocol.GroupChange{Op: protocol.GroupRole, Users: []string{target}, Role: req.Role}, http.StatusOK)
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) *apiError {
	_, g, _, e := s.memberCaller(r)
	if e != nil {
		return e
	}
	limit, e := queryInt(r, "limit", DefaultPage, 1, MaxPage)
	if e != nil {
		return e
	}
	after := r.URL.Query().Get("after")
	users := g.Current() // sorted
	i, _ := slices.BinarySearch(users, after)
	if i < len(users) && users[i] == after {
		i++
	}
	resp := MembersResponse{Members: []protocol.Member{}}
	for ; i < len(users) && len(resp.Members) < int(limit); i++ {
		m := g.Members[users[i]]
		resp.Members = append(resp.Members, protocol.Member{UserID: users[i], Role: m.Role, JoinedSeq: m.Joined})
	}
	if i < len(users) {
		resp.After = users[i-1]
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) myGroups(w http.ResponseWriter, r *http.Request) *apiError {
	c, e := s.authenticate(r, true)
	if e != nil {
		return e
	}
	limit, e := queryInt(r, "limit", DefaultPage, 1, MaxPage)
	if e != nil {
		return e
	}
	after := r.URL.Query().Get("after")
	if after != "" && model.ValidGroupID(after) != nil {
		return badRequest(protocol.ErrInvalidField, "after: "+model.ValidGroupID(after).Error())
	}
	list, next, err := s.Store.UserGroups(r.Context(), c.user, after, int(limit))
	if err != nil {
		return unavailable(err)
	}
	if list == nil {
		list = []store.UserGroup{}
	}
	writeJSON(w, http.StatusOK, GroupsResponse{Groups: list, After: next})
	return nil
}
