package sdk

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/imcluster/imcluster/services/protocol"
)

// Groups. Every call acts as a user (the service token's act-as header):
// the permissions are that user's (owner, admin, member). A change
// returns once the message tier applied it, or with Pending set after a
// few seconds (it will be applied); api/openapi/message.yaml has the
// details and the error codes (APIError.Code).

// PathGroups is the groups endpoint.
const PathGroups = "/v1/groups"

// Group is a group's description (the wire type of package protocol).
type Group = protocol.Group

// Member is one member of a group (the wire type of package protocol).
type Member = protocol.Member

// NewGroup describes a group to create. GroupID is optional (generated
// when empty); creating the same GroupID again as its owner with the same
// Name returns the group, so a create can be retried.
type NewGroup struct {
	GroupID string            `json:"group_id,omitempty"`
	Name    string            `json:"name"`
	Avatar  *string           `json:"avatar,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
	Members []string          `json:"members,omitempty"`
}

// GroupUpdate changes a group's fields; nil fields stay. Attrs replaces
// every attribute.
type GroupUpdate struct {
	Name   *string           `json:"name,omitempty"`
	Avatar *string           `json:"avatar,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// GroupResult answers a group change.
type GroupResult struct {
	Group   Group `json:"group"`
	Pending bool  `json:"pending,omitempty"` // in the log, not applied yet
}

// GroupMessage is a message to a group. Mentions go in Body.Mentions
// (user ids, or protocol.MentionAll for the owner and admins).
type GroupMessage struct {
	GroupID     string               `json:"group_id"`
	ClientMsgID string               `json:"client_msg_id"`
	Type        protocol.MessageType `json:"type"`
	Body        protocol.Body        `json:"body"`
	Attempt     int                  `json:"attempt,omitempty"`
}

func actAs(user string) map[string]string { return map[string]string{protocol.HeaderActAs: user} }

func groupPath(group string, rest ...string) string {
	p := PathGroups + "/" + url.PathEscape(group)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// CreateGroup creates a group owned by owner.
func (c *Client) CreateGroup(ctx context.Context, owner string, g NewGroup) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodPost, PathGroups, actAs(owner), g, &out)
	return out, err
}

// GetGroup returns a group as seen by member as.
func (c *Client) GetGroup(ctx context.Context, as, group string) (Group, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodGet, groupPath(group), actAs(as), nil, &out)
	return out.Group, err
}

// UpdateGroup renames the group or changes its avatar or attributes.
func (c *Client) UpdateGroup(ctx context.Context, as, group string, u GroupUpdate) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodPatch, groupPath(group), actAs(as), u, &out)
	return out, err
}

// DissolveGroup ends the group (its owner only).
func (c *Client) DissolveGroup(ctx context.Context, owner, group string) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodDelete, groupPath(group), actAs(owner), nil, &out)
	return out, err
}

// AddMembers adds users to the group (owner or admin as).
func (c *Client) AddMembers(ctx context.Context, as, group string, users []string) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodPost, groupPath(group, "members"), actAs(as), map[string][]string{"users": users}, &out)
	return out, err
}

// RemoveMember removes user from the group; with user == as, as leaves.
func (c *Client) RemoveMember(ctx context.Context, as, group, user string) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodDelete, groupPath(group, "members", user), actAs(as), nil, &out)
	return out, err
}

// LeaveGroup makes user leave the group (the owner cannot).
func (c *Client) LeaveGroup(ctx context.Context, user, group string) (GroupResult, error) {
	return c.RemoveMember(ctx, user, group, user)
}

// SetMemberRole sets user's role (the owner only); protocol.RoleOwner
// transfers ownership.
func (c *Client) SetMemberRole(ctx context.Context, owner, group, user string, role protocol.Role) (GroupResult, error) {
	var out GroupResult
	err := c.do(ctx, http.MethodPut, groupPath(group, "members", user, "role"), actAs(owner), map[string]protocol.Role{"role": role}, &out)
	return out, err
}

// ListMembers returns a page of the group's members after user id after
// ("" for the first page) and the cursor of the next page ("" at the end).
func (c *Client) ListMembers(ctx context.Context, as, group, after string, limit int) ([]Member, string, error) {
	var out struct {
		Members []Member `json:"members"`
		After   string   `json:"after"`
	}
	q := fmt.Sprintf("?limit=%d&after=%s", limit, url.QueryEscape(after))
	err := c.do(ctx, http.MethodGet, groupPath(group, "members")+q, actAs(as), nil, &out)
	return out.Members, out.After, err
}

// UserGroup is one entry of a user's group list.
type UserGroup struct {
	GroupID   string `json:"group_id"`
	ConvID    string `json:"conv_id"`
	JoinedSeq int64  `json:"joined_seq"`
}

// ListGroups returns a page of user's groups and the next page's cursor.
func (c *Client) ListGroups(ctx context.Context, user, after string, limit int) ([]UserGroup, string, error) {
	var out struct {
		Groups []UserGroup `json:"groups"`
		After  string      `json:"after"`
	}
	q := fmt.Sprintf("?limit=%d&after=%s", limit, url.QueryEscape(after))
	err := c.do(ctx, http.MethodGet, PathGroups+q, actAs(user), nil, &out)
	return out.Groups, out.After, err
}

// SendGroupMessage sends m to a group on behalf of member from. Like
// SendPrivateMessage it is idempotent per (from, ClientMsgID).
func (c *Client) SendGroupMessage(ctx context.Context, from string, m GroupMessage) (SendResult, error) {
	var out SendResult
	err := c.do(ctx, http.MethodPost, PathSend, actAs(from), m, &out)
	return out, err
}
