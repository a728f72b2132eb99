package pipeline

import (
	"context"
	"slices"
	"sync"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// Groups. A group's records — its messages, reads, recalls and changes —
// all travel its conversation's partition, so the pipeline, the
// partition's single writer, applies them in log order: whether a sender
// is a member, and who receives a message, is decided at the record's
// place in the log. The API's own membership check is an early refusal
// only; it cannot see changes still in the log, and this is the check
// that counts (a send racing a removal is stored if it is ahead of the
// removal in the log, and rejected to the sender otherwise).
//
// A group's state (store.GroupState) is loaded once and then kept in
// memory, changed by the records this process applies. It is dropped when
// the partition's consumer session changes (another process may have
// applied records meanwhile) and when a batch fails (its changes may be
// half written). Member rows carry the seqs of their join and leave, so
// membership at any seq can be evaluated even on state that already holds
// later changes (a batch replayed after a crash).
//
// Known gaps of a replay over state that already holds later changes:
// roles are not versioned (a replayed change is judged by the member's
// latest role), and a member who left and joined again is judged by the
// latest join only (a replayed message from before the leave does not
// reach them again — their first pass did, unless it crashed half way).

// maxCachedGroups bounds the groups kept in memory per process.
const maxCachedGroups = 10000

// groupCache holds the groups of the partitions this process consumes.
type groupCache struct {
	mu       sync.Mutex
	groups   map[string]*store.GroupState
	sessions map[int32]context.Context // the session each partition's entries belong to
	parts    map[string]int32
}

// session notes that part is consumed in session giveUp, dropping the
// partition's groups when the session is new.
func (c *groupCache) session(part int32, giveUp context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions == nil {
		c.groups, c.sessions, c.parts = map[string]*store.GroupState{}, map[int32]context.Context{}, map[string]int32{}
	}
	if c.sessions[part] == giveUp {
		return
	}
	c.sessions[part] = giveUp
	for g, p := range c.parts {
		if p == part {
			delete(c.groups, g)
			delete(c.parts, g)
		}
	}
}

func (c *groupCache) get(g string) *store.GroupState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.groups[g]
}

// keep stores the states a persisted batch produced; parts holds the
// partition each group's records travel.
func (c *groupCache) keep(states map[string]*store.GroupState, parts map[string]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g, st := range states {
		if len(c.groups) >= maxCachedGroups {
			for k := range c.groups { // evict any one
				delete(c.groups, k)
				delete(c.parts, k)
				break
			}
		}
		c.groups[g], c.parts[g] = st, parts[g]
	}
}

// drop forgets states (a batch that failed).
func (c *groupCache) drop(states map[string]*store.GroupState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for g := range states {
		delete(c.groups, g)
		delete(c.parts, g)
	}
}

// applyGroups decides every group item of a batch in log order: sets the
// Members each reaches, the member rows a change writes, and rejects what
// its sender may not do at that place in the log. It returns the items to
// persist and the groups' states after the batch (to keep once persisted).
func (p *Processor) applyGroups(ctx, giveUp context.Context, items []store.Item) ([]store.Item, map[string]*store.GroupState, error) {
	states := map[string]*store.GroupState{}
	kept := items[:0]
	for _, it := range items {
		if !it.Rec.IsGroup() || it.Rejected {
			kept = append(kept, it)
			continue
		}
		gid, _ := model.ParseGroupConv(it.Rec.ConvID) // validated by Decode
		g := states[gid]
		if g == nil {
			var err error
			if g, err = p.groupState(ctx, giveUp, gid); err != nil {
				return nil, nil, err
			}
			states[gid] = g
		}
		if p.decideGroupItem(g, &it) {
			kept = append(kept, it)
		}
	}
	return kept, states, nil
}

// groupState returns a copy of the cached state of group g, or loads it.
func (p *Processor) groupState(ctx, giveUp context.Context, g string) (*store.GroupState, error) {
	if st := p.groups.get(g); st != nil {
		return st.Clone(), nil
	}
	var st *store.GroupState
	err := p.retry(ctx, giveUp, "group_state", func() (err error) {
		st, err = p.Store.LoadGroup(ctx, g)
		return err
	})
	return st, err
}

// reject marks it rejected for reason: only its sender hears of it.
func rejectItem(it *store.Item, reason string) {
	it.Rejected, it.Reason = true, reason
	mRecords.WithLabelValues("group_rejected").Inc()
}

// decideGroupItem decides one group item against g (and changes g for a
// group change it applies). It returns false for an item with no effect.
func (p *Processor) decideGroupItem(g *store.GroupState, it *store.Item) bool {
	r, off := &it.Rec, it.Off
	member, isMember := g.MemberAt(r.From, off-1)
	switch {
	case r.Kind == protocol.KindGroup && r.Group.Op == protocol.GroupCreated:
		return p.applyCreate(g, it)
	case g.Dissolved():
		if r.Kind == protocol.KindMessage || r.Kind == protocol.KindGroup {
			rejectItem(it, protocol.ErrGroupDissolved)
			return true
		}
		return false
	case !g.Exists() || !isMember:
		if r.Kind == protocol.KindMessage || r.Kind == protocol.KindGroup {
			rejectItem(it, protocol.ErrNotMember)
			return true
		}
		return false // a read or recall by a non-member changes nothing
	}
	switch r.Kind {
	case protocol.KindMessage:
		if model.MentionsAll(r.Body) && !member.Role.CanManage() {
			rejectItem(it, protocol.ErrForbidden)
			return true
		}
		it.Members = g.MembersAt(off)
	case protocol.KindRecall:
		it.Members = g.MembersAt(off)
	case protocol.KindRead:
		it.Members = []string{r.From}
	case protocol.KindGroup:
		return p.applyChange(g, member, it)
	}
	return true
}

// applyCreate applies a created record: the sender owns the group, the
// named users are its members.
func (p *Processor) applyCreate(g *store.GroupState, it *store.Item) bool {
	r, off := &it.Rec, it.Off
	if g.Exists() {
		rejectItem(it, protocol.ErrInvalidField) // the id is taken
		return true
	}
	users := slices.DeleteFunc(slices.Clone(r.Group.Users), func(u string) bool { return u == r.From })
	if 1+len(users) > p.maxGroupSize() {
		rejectItem(it, protocol.ErrLimitReached)
		return true
	}
	c := r.Group
	g.CreatedSeq, g.CreatedMs, g.Owner, g.Name, g.Attrs = off, r.AtMs, r.From, *c.Name, c.Attrs
	if c.Avatar != nil {
		g.Avatar = *c.Avatar
	}
	it.Roles = map[string]protocol.Role{r.From: protocol.RoleOwner}
	for _, u := range users {
		it.Roles[u] = protocol.RoleMember
	}
	for u, role := range it.Roles {
		g.Members[u] = store.MemberState{Role: role, Joined: off, Left: -1}
	}
	it.Members = g.MembersAt(off)
	return true
}

func (p *Processor) maxGroupSize() int {
	if p.MaxGroupSize > 0 {
		return p.MaxGroupSize
	}
	return config.DefaultGroupMaxMembers
}

// applyChange applies a group change by member (not created) to g.
func (p *Processor) applyChange(g *store.GroupState, actor store.MemberState, it *store.Item) bool {
	r, off := &it.Rec, it.Off
	c := r.Group
	before := g.MembersAt(off - 1)
	switch c.Op {
	case protocol.GroupJoined:
		if !actor.Role.CanManage() {
			rejectItem(it, protocol.ErrForbidden)
			return true
		}
		var added []string
		for _, u := range c.Users {
			if _, ok := g.Member(u); !ok {
				added = append(added, u)
			}
		}
		if len(added) == 0 {
			return false
		}
		if len(before)+len(added) > p.maxGroupSize() {
			rejectItem(it, protocol.ErrLimitReached)
			return true
		}
		it.Roles = map[string]protocol.Role{}
		for _, u := range added {
			it.Roles[u] = protocol.RoleMember
			g.Members[u] = store.MemberState{Role: protocol.RoleMember, Joined: off, Left: g.Members[u].Left}
		}
		it.Members = g.MembersAt(off)
	case protocol.GroupRemoved:
		var gone []string
		for _, u := range c.Users {
			m, ok := g.Member(u)
			switch {
			case !ok:
				continue
			case m.Role == protocol.RoleOwner, m.Role == protocol.RoleAdmin && actor.Role != protocol.RoleOwner, !actor.Role.CanManage():
				rejectItem(it, protocol.ErrForbidden)
				return true
			}
			gone = append(gone, u)
		}
		if len(gone) == 0 {
			return false
		}
		p.leave(g, it, gone, before)
	case protocol.GroupLeft:
		if actor.Role == protocol.RoleOwner {
			rejectItem(it, protocol.ErrForbidden) // transfer ownership or dissolve first
			return true
		}
		p.leave(g, it, []string{r.From}, before)
	case protocol.GroupDissolved:
		if actor.Role != protocol.RoleOwner {
			rejectItem(it, protocol.ErrForbidden)
			return true
		}
		g.DissolvedSeq = off
		p.leave(g, it, before, before)
	case protocol.GroupRole:
		if !p.applyRole(g, actor, it) {
			return true // rejected
		}
		it.Members = g.MembersAt(off)
	case protocol.GroupUpdated:
		if !actor.Role.CanManage() {
			rejectItem(it, protocol.ErrForbidden)
			return true
		}
		if c.Name != nil {
			g.Name = *c.Name
		}
		if c.Avatar != nil {
			g.Avatar = *c.Avatar
		}
		if c.Attrs != nil {
			g.Attrs = c.Attrs
		}
		it.Members = g.MembersAt(off)
	}
	return true
}

// leave ends the membership of users at it's seq; everyone who was a
// member before (the leaving users too) gets the event.
func (p *Processor) leave(g *store.GroupState, it *store.Item, users, before []string) {
	for _, u := range users {
		m := g.Members[u]
		m.Left = it.Off
		g.Members[u] = m
	}
	it.Left, it.Members = users, before
}

// applyRole applies a role change: only the owner changes roles, and
// giving the owner role transfers ownership (the old owner becomes an
// admin). It returns false when it rejected the change.
func (p *Processor) applyRole(g *store.GroupState, actor store.MemberState, it *store.Item) bool {
	c, from := it.Rec.Group, it.Rec.From
	if actor.Role != protocol.RoleOwner {
		rejectItem(it, protocol.ErrForbidden)
		return false
	}
	for _, u := range c.Users {
		if _, ok := g.Member(u); !ok || u == from {
			rejectItem(it, protocol.ErrInvalidField) // not a member, or the owner's own role
			return false
		}
	}
	it.Roles = map[string]protocol.Role{}
	for _, u := range c.Users {
		it.Roles[u] = c.Role
	}
	if c.Role == protocol.RoleOwner {
		it.Roles[from] = protocol.RoleAdmin
		g.Owner = c.Users[0]
	}
	for u, role := range it.Roles {
		m := g.Members[u]
		m.Role = role
		g.Members[u] = m
	}
	return true
}
