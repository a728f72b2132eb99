package store

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// MemberState is one row of group_members: a user's role and the seqs of
// their last join and leave (-1: never).
type MemberState struct {
	Role   protocol.Role
	Joined int64
	Left   int64
}

// At reports whether the row makes its user a member at seq.
func (m MemberState) At(seq int64) bool {
	if m.Joined < 0 || m.Joined > seq {
		return false
	}
	return !(m.Left > m.Joined && m.Left <= seq)
}

// Current reports whether the user is a member after every applied change.
func (m MemberState) Current() bool { return m.Joined >= 0 && m.Left <= m.Joined }

// GroupState is a group as stored: its row and every member row (members
// who left included). The pipeline keeps one per group it applies changes
// to; the API reads one to check permissions.
type GroupState struct {
	ID           string
	Name         string
	Avatar       string
	Attrs        map[string]string
	Owner        string
	CreatedMs    int64
	CreatedSeq   int64 // -1: not created
	DissolvedSeq int64 // -1: not dissolved
	Members      map[string]MemberState
}

// Exists reports whether the group was created.
func (g *GroupState) Exists() bool { return g.CreatedSeq >= 0 }

// Dissolved reports whether the group was dissolved.
func (g *GroupState) Dissolved() bool { return g.DissolvedSeq >= 0 }

// MemberAt returns user's row if user is a member at seq.
func (g *GroupState) MemberAt(user string, seq int64) (MemberState, bool) {
	m, ok := g.Members[user]
	return m, ok && m.At(seq)
}

// Member returns user's row if user is a member now.
func (g *GroupState) Member(user string) (MemberState, bool) {
	m, ok := g.Members[user]
	return m, ok && m.Current()
}

// MembersAt returns the members at seq, sorted.
func (g *GroupState) MembersAt(seq int64) []string {
	out := make([]string, 0, len(g.Members))
	for u, m := range g.Members {
		if m.At(seq) {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// Current returns the current members, sorted.
func (g *GroupState) Current() []string {
	out := make([]string, 0, len(g.Members))
	for u, m := range g.Members {
		if m.Current() {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// Clone returns a deep copy (the pipeline changes a copy while it applies a
// batch, and keeps it only once the batch is persisted).
func (g *GroupState) Clone() *GroupState {
	c := *g
	c.Attrs = maps.Clone(g.Attrs)
	c.Members = maps.Clone(g.Members)
	return &c
}

// Info returns the group's public description.
func (g *GroupState) Info() protocol.Group {
	return protocol.Group{GroupID: g.ID, ConvID: model.GroupConvID(g.ID), Name: g.Name, Avatar: g.Avatar, Attrs: g.Attrs,
		Owner: g.Owner, Members: len(g.Current()), CreatedMs: g.CreatedMs, Dissolved: g.Dissolved()}
}

func orMinus1(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

// LoadGroup reads a group and all its member rows. A group that was never
// created comes back with CreatedSeq -1 and no error.
func (st *Store) LoadGroup(ctx context.Context, group string) (*GroupState, error) {
	g := &GroupState{ID: group, CreatedSeq: -1, DissolvedSeq: -1, Members: map[string]MemberState{}}
	var name, avatar, owner *string
	var created, createdSeq, dissolved *int64
	it := st.s.Query(`SELECT name, avatar, attrs, owner, created_ms, created_seq, dissolved_seq FROM groups WHERE group_id = ?`, group).
		WithContext(ctx).Iter()
	if it.Scan(&name, &avatar, &g.Attrs, &owner, &created, &createdSeq, &dissolved) {
		g.Name, g.Avatar, g.Owner = str(name), str(avatar), str(owner)
		g.CreatedMs, g.CreatedSeq, g.DissolvedSeq = max(orMinus1(created), 0), orMinus1(createdSeq), orMinus1(dissolved)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("while reading group %s: %w", group, err)
	}
	it = st.s.Query(`SELECT user_id, role, joined_seq, left_seq FROM group_members WHERE group_id = ?`, group).
		WithContext(ctx).PageSize(1000).Iter()
	var user string
	var role *string
	var joined, left *int64
	for it.Scan(&user, &role, &joined, &left) {
		g.Members[user] = MemberState{Role: protocol.Role(str(role)), Joined: orMinus1(joined), Left: orMinus1(left)}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("while reading members of group %s: %w", group, err)
	}
	return g, nil
}

// UserGroup is one entry of a user's group list.
type UserGroup struct {
	GroupID   string `json:"group_id"`
	ConvID    string `json:"conv_id"`
	JoinedSeq int64  `json:"joined_seq"`
}

// UserGroups returns up to limit of the groups user is a member of now,
// with group_id > after, in group_id order, and the cursor to continue
// from ("" at the end). Rows of groups the user left are skipped, so a page
// may scan more rows than it returns (at most 4×limit).
func (st *Store) UserGroups(ctx context.Context, user, after string, limit int) ([]UserGroup, string, error) {
	limit = clampLimit(limit)
	scan := 4 * limit
	it := st.s.Query(`SELECT group_id, joined_seq, left_seq FROM user_groups WHERE user_id = ? AND group_id > ? LIMIT ?`,
		user, after, scan).WithContext(ctx).PageSize(scan).Iter()
	var out []UserGroup
	var gid, last string
	var joined, left *int64
	scanned := 0
	for len(out) < limit && it.Scan(&gid, &joined, &left) {
		scanned++
		last = gid
		m := MemberState{Joined: orMinus1(joined), Left: orMinus1(left)}
		if m.Current() {
			out = append(out, UserGroup{GroupID: gid, ConvID: model.GroupConvID(gid), JoinedSeq: m.Joined})
		}
	}
	if err := it.Close(); err != nil {
		return nil, "", fmt.Errorf("while listing groups: %w", err)
	}
	if len(out) < limit && scanned < scan {
		last = "" // the partition ended
	}
	return out, last, nil
}

// CountUserGroups counts the groups user is a member of now, reading at
// most limit+1 rows of theirs (the caller checks a limit).
func (st *Store) CountUserGroups(ctx context.Context, user string, limit int) (int, error) {
	it := st.s.Query(`SELECT joined_seq, left_seq FROM user_groups WHERE user_id = ?`, user).
		WithContext(ctx).PageSize(1000).Iter()
	n, rows := 0, 0
	var joined, left *int64
	for it.Scan(&joined, &left) {
		rows++
		if (MemberState{Joined: orMinus1(joined), Left: orMinus1(left)}).Current() {
			n++
		}
		if n > limit || rows > 4*limit+1000 {
			break
		}
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("while counting groups: %w", err)
	}
	return n, nil
}
