package pipeline

import (
	"context"
	"slices"
	"testing"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// groupItem builds a decoded group record at off.
func groupItem(off int64, from string, kind protocol.Kind, c *protocol.GroupChange, mentions ...string) store.Item {
	r := model.Record{Kind: kind, ConvID: model.GroupConvID("g"), From: from, AtMs: 1}
	switch kind {
	case protocol.KindGroup:
		r.Group = c
	case protocol.KindMessage:
		r.MsgID, r.ClientMsgID, r.Type = "m", "c", protocol.TypeText
		r.Body = &protocol.Body{Text: "x", Mentions: mentions}
	}
	return store.Item{Off: off, Rec: r}
}

func change(op protocol.GroupOp, users ...string) *protocol.GroupChange {
	name := "G"
	c := &protocol.GroupChange{Op: op, Users: users}
	if op == protocol.GroupCreated {
		c.Name = &name
	}
	return c
}

// TestGroupDecisions: the pipeline decides each group record against the
// group's state at the record's place in the log — who may send, manage
// and receive — whatever the API saw when it accepted the record.
func TestGroupDecisions(t *testing.T) {
	created := groupItem(0, "own", protocol.KindGroup, change(protocol.GroupCreated, "own", "adm", "mem"))
	promote := groupItem(1, "own", protocol.KindGroup, &protocol.GroupChange{Op: protocol.GroupRole, Users: []string{"adm"}, Role: protocol.RoleAdmin})
	cases := []struct {
		name   string
		items  []store.Item
		reason string   // of the last item ("" kept)
		to     []string // Members of the last item, when kept
		drop   bool     // the last item has no effect
	}{
		{"member sends", []store.Item{created, promote, groupItem(2, "mem", protocol.KindMessage, nil)}, "", []string{"adm", "mem", "own"}, false},
		{"outsider sends", []store.Item{created, groupItem(1, "eve", protocol.KindMessage, nil)}, protocol.ErrNotMember, nil, false},
		{"send into a group never created", []store.Item{groupItem(0, "own", protocol.KindMessage, nil)}, protocol.ErrNotMember, nil, false},
		{"send behind the sender's removal", []store.Item{created, promote,
			groupItem(2, "adm", protocol.KindGroup, change(protocol.GroupRemoved, "mem")),
			groupItem(3, "mem", protocol.KindMessage, nil)}, protocol.ErrNotMember, nil, false},
		{"the removal reaches the removed", []store.Item{created, promote,
			groupItem(2, "adm", protocol.KindGroup, change(protocol.GroupRemoved, "mem"))}, "", []string{"adm", "mem", "own"}, false},
		{"after a removal, the removed get nothing", []store.Item{created, promote,
			groupItem(2, "adm", protocol.KindGroup, change(protocol.GroupRemoved, "mem")),
			groupItem(3, "own", protocol.KindMessage, nil)}, "", []string{"adm", "own"}, false},
		{"a join reaches the joined", []store.Item{created, promote,
			groupItem(2, "adm", protocol.KindGroup, change(protocol.GroupJoined, "new"))}, "", []string{"adm", "mem", "new", "own"}, false},
		{"a plain member cannot add", []store.Item{created, groupItem(1, "mem", protocol.KindGroup, change(protocol.GroupJoined, "new"))}, protocol.ErrForbidden, nil, false},
		{"an admin demoted before acting", []store.Item{created, promote,
			groupItem(2, "own", protocol.KindGroup, &protocol.GroupChange{Op: protocol.GroupRole, Users: []string{"adm"}, Role: protocol.RoleMember}),
			groupItem(3, "adm", protocol.KindGroup, change(protocol.GroupRemoved, "mem"))}, protocol.ErrForbidden, nil, false},
		{"an admin cannot remove the owner", []store.Item{created, promote, groupItem(2, "adm", protocol.KindGroup, change(protocol.GroupRemoved, "own"))}, protocol.ErrForbidden, nil, false},
		{"the owner cannot leave", []store.Item{created, groupItem(1, "own", protocol.KindGroup, change(protocol.GroupLeft))}, protocol.ErrForbidden, nil, false},
		{"adding a member twice changes nothing", []store.Item{created, groupItem(1, "own", protocol.KindGroup, change(protocol.GroupJoined, "mem"))}, "", nil, true},
		{"@all by a member", []store.Item{created, groupItem(1, "mem", protocol.KindMessage, nil, protocol.MentionAll)}, protocol.ErrForbidden, nil, false},
		{"@all by an admin", []store.Item{created, promote, groupItem(2, "adm", protocol.KindMessage, nil, protocol.MentionAll)}, "", []string{"adm", "mem", "own"}, false},
		{"send after dissolution", []store.Item{created, groupItem(1, "own", protocol.KindGroup, change(protocol.GroupDissolved)),
			groupItem(2, "own", protocol.KindMessage, nil)}, protocol.ErrGroupDissolved, nil, false},
		{"a read reaches the reader only", []store.Item{created, groupItem(1, "mem", protocol.KindRead, nil)}, "", []string{"mem"}, false},
		{"a read by an outsider has no effect", []store.Item{created, groupItem(1, "eve", protocol.KindRead, nil)}, "", nil, true},
		{"create an existing group", []store.Item{created, groupItem(1, "eve", protocol.KindGroup, change(protocol.GroupCreated, "eve"))}, protocol.ErrInvalidField, nil, false},
		{"ownership transfer", []store.Item{created,
			groupItem(1, "own", protocol.KindGroup, &protocol.GroupChange{Op: protocol.GroupRole, Users: []string{"mem"}, Role: protocol.RoleOwner}),
			groupItem(2, "own", protocol.KindGroup, change(protocol.GroupLeft))}, "", []string{"adm", "mem", "own"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _, _, _ := newProc()
			ctx := context.Background()
			items := append([]store.Item(nil), tc.items...)
			kept, _, err := p.applyGroups(ctx, ctx, items)
			if err != nil {
				t.Fatal(err)
			}
			lastOff := tc.items[len(tc.items)-1].Off
			var last *store.Item
			for i := range kept {
				if kept[i].Off == lastOff {
					last = &kept[i]
				}
			}
			switch {
			case tc.drop && last != nil:
				t.Fatalf("kept %+v, want no effect", *last)
			case tc.drop:
				return
			case last == nil:
				t.Fatal("the last item was dropped")
			case last.Reason != tc.reason || last.Rejected != (tc.reason != ""):
				t.Fatalf("rejected=%v reason %q, want %q", last.Rejected, last.Reason, tc.reason)
			case tc.reason == "" && !slices.Equal(last.Members, tc.to):
				t.Fatalf("reaches %v, want %v", last.Members, tc.to)
			}
		})
	}
}

// TestGroupLimit: the pipeline enforces the group size whatever the API
// let through (two adds racing for the last places).
func TestGroupLimit(t *testing.T) {
	p, _, _, _, _ := newProc()
	p.MaxGroupSize = 3
	ctx := context.Background()
	items := []store.Item{
		groupItem(0, "own", protocol.KindGroup, change(protocol.GroupCreated, "own", "a")),
		groupItem(1, "own", protocol.KindGroup, change(protocol.GroupJoined, "b")),
		groupItem(2, "own", protocol.KindGroup, change(protocol.GroupJoined, "c")),
	}
	kept, states, err := p.applyGroups(ctx, ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if kept[1].Rejected || kept[2].Reason != protocol.ErrLimitReached {
		t.Fatalf("want the third member in and the fourth refused: %+v, %+v", kept[1], kept[2])
	}
	if got := states["g"].Current(); !slices.Equal(got, []string{"a", "b", "own"}) {
		t.Fatalf("members %v", got)
	}
}
