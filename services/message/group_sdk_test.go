package message_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestGroupSDKRemovalRace drives groups through pkg/sdk as a business back
// end (a service token acting as users) and proves the removal race: a
// member removed while messages are in flight has exactly the messages
// before the removal event and none after, and every message sent before
// it reached the removal's place in the log was stored and is in everyone's
// timeline in one order.
func TestGroupSDKRemovalRace(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, "all")
	c := sdk.New(e.proc.URL, msgtest.Token(t, e.keys.Service, "backend"))
	ctx := context.Background()
	const gid = "race"
	conv := model.GroupConvID(gid)
	if _, err := c.CreateGroup(ctx, "owner", sdk.NewGroup{GroupID: gid, Name: "Race", Members: []string{"a", "b", "victim"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetMemberRole(ctx, "owner", gid, "a", protocol.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	var apiErr *sdk.APIError
	if _, err := c.AddMembers(ctx, "b", gid, []string{"x"}); !errors.As(err, &apiErr) || apiErr.Code != protocol.ErrForbidden {
		t.Fatalf("a plain member added someone: %v", err)
	}

	// a and b send while the admin a removes victim, who keeps sending too.
	var wg sync.WaitGroup
	var removalSeq int64
	sent := map[string]int{}
	var mu sync.Mutex
	for _, u := range []string{"a", "b", "victim"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				_, err := c.SendGroupMessage(ctx, u, sdk.GroupMessage{GroupID: gid, ClientMsgID: fmt.Sprintf("%s-%d", u, i),
					Type: protocol.TypeText, Body: protocol.Body{Text: "hi"}})
				if u == "victim" && errors.As(err, &apiErr) && apiErr.Code == protocol.ErrNotMember {
					return // refused by the API once the removal is visible
				}
				if err != nil {
					t.Errorf("send %s-%d: %v", u, i, err)
					return
				}
				mu.Lock()
				sent[u]++
				mu.Unlock()
				if u == "a" && i == 10 {
					r, err := c.RemoveMember(ctx, "a", gid, "victim")
					if err != nil {
						t.Errorf("remove: %v", err)
						return
					}
					removalSeq = *r.Group.Seq
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	e.waitConsumed(t)
	owner, _ := e.syncAll(t, "owner", "", 100)
	victim, _ := e.syncAll(t, "victim", "", 100)
	var want []string // the owner's timeline up to and including the removal
	for _, ev := range owner {
		if ev.ConvID == conv && ev.Seq <= removalSeq {
			want = append(want, fmt.Sprintf("%s:%d", ev.Kind, ev.Seq))
		}
	}
	// The victim's rejected sends (after the removal) reach only the victim.
	var victimTimeline []string
	for _, ev := range victim {
		if ev.ConvID == conv && ev.Kind != protocol.KindRejected {
			victimTimeline = append(victimTimeline, fmt.Sprintf("%s:%d", ev.Kind, ev.Seq))
		}
	}
	if !slices.Equal(victimTimeline, want) {
		t.Fatalf("victim's timeline\n%v\nwant everything up to the removal at %d\n%v", victimTimeline, removalSeq, want)
	}
	// Every accepted send of a and b is stored once, in every remaining
	// member's one order.
	aTimeline := eventsOf(e.mustSync(t, "a"), conv)
	if !slices.Equal(aTimeline, eventsOf(owner, conv)) {
		t.Fatalf("a and the owner disagree:\n%v\n%v", aTimeline, eventsOf(owner, conv))
	}
	msgs := 0
	for _, ev := range owner {
		if ev.ConvID == conv && ev.Kind == protocol.KindMessage {
			msgs++
			if ev.Message.From == "victim" && ev.Seq > removalSeq {
				t.Fatalf("a message of victim after the removal was stored: %+v", ev)
			}
		}
	}
	if min := sent["a"] + sent["b"]; msgs < min {
		t.Fatalf("%d messages stored, a and b alone sent %d", msgs, min)
	}
	members, next, err := c.ListMembers(ctx, "owner", gid, "", 10)
	if err != nil || next != "" || len(members) != 3 || slices.ContainsFunc(members, func(m sdk.Member) bool { return m.UserID == "victim" }) {
		t.Fatalf("members after the removal: %+v %q %v", members, next, err)
	}
	groups, _, err := c.ListGroups(ctx, "victim", "", 10)
	if err != nil || len(groups) != 0 {
		t.Fatalf("victim's groups: %+v %v", groups, err)
	}
}

func (e *env) mustSync(t *testing.T, as string) []protocol.Event {
	t.Helper()
	evs, _ := e.syncAll(t, as, "", 100)
	return evs
}
