package message_test

import (
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// groupCall makes a group API call as user and checks its status.
func (e *env) groupCall(t *testing.T, as, method, path string, body any, want int) api.GroupResponse {
	t.Helper()
	r := e.c.Do(t, method, path, e.user(t, as), body)
	if r.Status != want {
		t.Fatalf("%s %s as %s: %d %s, want %d", method, path, as, r.Status, r.Body, want)
	}
	var out api.GroupResponse
	if r.Status < 300 {
		r.Decode(t, &out)
	}
	return out
}

func groupText(gid, cmid, body string, mentions ...string) api.SendRequest {
	return api.SendRequest{GroupID: gid, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: body, Mentions: mentions}}
}

// messagesOf returns the kinds and seqs of events of conv, as "kind:seq".
func eventsOf(evs []protocol.Event, conv string) []string {
	var out []string
	for _, ev := range evs {
		if ev.ConvID == conv {
			out = append(out, fmt.Sprintf("%s:%d", ev.Kind, ev.Seq))
		}
	}
	return out
}

// TestGroupTimeline proves on the real stack: one order for concurrent
// senders in every member's sync and in history, membership changes in
// that order, a new member's view starting at their join, a removed
// member seeing nothing after the removal, reads to the reader only,
// mentions, and the permission checks.
func TestGroupTimeline(t *testing.T) {
	e := newEnv(t, 3)
	e.start(t, "all")
	const gid = "team"
	conv := model.GroupConvID(gid)
	created := e.groupCall(t, "alice", "POST", "/v1/groups", api.CreateGroupRequest{GroupID: gid, Name: "Team", Members: []string{"bob", "carol"}}, 201)
	if created.Pending || created.Group.Members != 3 || created.Group.Owner != "alice" {
		t.Fatalf("create: %+v", created)
	}
	// A retried create by its owner is answered with the group; anyone
	// else's create of the id is refused.
	e.groupCall(t, "alice", "POST", "/v1/groups", api.CreateGroupRequest{GroupID: gid, Name: "Team"}, 200)
	e.groupCall(t, "mallory", "POST", "/v1/groups", api.CreateGroupRequest{GroupID: gid, Name: "Team"}, 409)

	// Three members send concurrently.
	const perSender = 20
	var wg sync.WaitGroup
	for _, u := range []string{"alice", "bob", "carol"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				e.send(t, u, groupText(gid, fmt.Sprintf("%s-%d", u, i), fmt.Sprintf("%s says %d", u, i)))
			}
		}()
	}
	wg.Wait()
	e.waitPersisted(t, conv, 3*perSender+1) // + the created event
	all := map[string][]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		evs, _ := e.syncAll(t, u, "", 100)
		all[u] = eventsOf(evs, conv)
	}
	if len(all["alice"]) != 3*perSender+1 || !slices.Equal(all["alice"], all["bob"]) || !slices.Equal(all["alice"], all["carol"]) {
		t.Fatalf("members' timelines differ or are incomplete:\nalice %v\nbob   %v\ncarol %v", all["alice"], all["bob"], all["carol"])
	}
	hist := e.history(t, "bob", conv, 7)
	if got := eventsOf(hist, conv); !slices.Equal(got, all["alice"]) {
		t.Fatalf("history %v\nsync    %v", got, all["alice"])
	}

	// Outsiders and plain members are refused, with stable codes.
	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "mallory"), groupText(gid, "m1", "hi"))
	if r.Status != 403 || r.Code() != protocol.ErrNotMember {
		t.Fatalf("non-member send: %d %s", r.Status, r.Body)
	}
	for _, path := range []string{"/v1/conversations/" + url.PathEscape(conv) + "/messages", "/v1/groups/" + gid, "/v1/groups/" + gid + "/members"} {
		if r := e.c.Do(t, "GET", path, e.user(t, "mallory"), nil); r.Status != 403 || r.Code() != protocol.ErrNotMember {
			t.Fatalf("non-member GET %s: %d %s", path, r.Status, r.Body)
		}
	}
	if r := e.c.Do(t, "POST", "/v1/conversations/"+url.PathEscape(conv)+"/read", e.user(t, "mallory"), map[string]int64{"seq": 1}); r.Status != 403 {
		t.Fatalf("non-member read: %d %s", r.Status, r.Body)
	}
	e.groupCall(t, "bob", "POST", "/v1/groups/"+gid+"/members", api.UsersRequest{Users: []string{"mallory"}}, 403)
	e.groupCall(t, "bob", "DELETE", "/v1/groups/"+gid+"/members/carol", nil, 403)
	e.groupCall(t, "bob", "DELETE", "/v1/groups/"+gid, nil, 403)
	if r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "bob"), groupText(gid, "all-1", "hey all", protocol.MentionAll)); r.Status != 403 {
		t.Fatalf("mention all by a member: %d %s", r.Status, r.Body)
	}

	// dave joins: his view starts at his join event.
	joined := e.groupCall(t, "alice", "POST", "/v1/groups/"+gid+"/members", api.UsersRequest{Users: []string{"dave"}}, 200)
	joinSeq := *joined.Group.Seq
	m := e.send(t, "alice", groupText(gid, "after-join", "welcome dave", "dave"))
	// carol is removed; a message after it does not reach her.
	removed := e.groupCall(t, "alice", "DELETE", "/v1/groups/"+gid+"/members/carol", nil, 200)
	after := e.send(t, "bob", groupText(gid, "after-removal", "carol is gone"))
	e.waitConsumed(t)

	dave, _ := e.syncAll(t, "dave", "", 100)
	if got := eventsOf(dave, conv); len(got) != 4 || got[0] != fmt.Sprintf("group:%d", joinSeq) {
		t.Fatalf("dave's timeline %v: want his join, the welcome, carol's removal, bob's message", got)
	}
	var flagged bool
	for _, ev := range dave {
		if ev.Seq == *m.Seq {
			flagged = ev.Message != nil && slices.Contains(ev.Message.Body.Mentions, "dave")
		}
	}
	if !flagged {
		t.Fatalf("the welcome does not mention dave in his sync: %+v", dave)
	}
	if h := eventsOf(e.history(t, "dave", conv, 50), conv); len(h) != 4 {
		t.Fatalf("dave's history %v: want from his join on", h)
	}
	carol, _ := e.syncAll(t, "carol", "", 100)
	cg := eventsOf(carol, conv)
	if last := cg[len(cg)-1]; last != fmt.Sprintf("group:%d", *removed.Group.Seq) {
		t.Fatalf("carol's timeline ends with %s, want her removal at %d (bob's later message is %d)", last, *removed.Group.Seq, *after.Seq)
	}
	if r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "carol"), groupText(gid, "c-late", "still here?")); r.Status != 403 {
		t.Fatalf("removed member's send: %d %s", r.Status, r.Body)
	}

	// A read reaches the reader's devices only.
	e.c.Do(t, "POST", "/v1/conversations/"+url.PathEscape(conv)+"/read", e.user(t, "bob"), map[string]int64{"seq": *after.Seq})
	e.waitConsumed(t)
	for _, rt := range e.router.All() {
		if rt.Event.Kind == protocol.KindRead && rt.Event.ConvID == conv && !slices.Equal(rt.Users, []string{"bob"}) {
			t.Fatalf("group read routed to %v", rt.Users)
		}
	}
	// Members as listed.
	var ms api.MembersResponse
	e.c.Do(t, "GET", "/v1/groups/"+gid+"/members?limit=2", e.user(t, "dave"), nil).Decode(t, &ms)
	if len(ms.Members) != 2 || ms.Members[0].UserID != "alice" || ms.Members[0].Role != protocol.RoleOwner || ms.After != "bob" {
		t.Fatalf("members page 1: %+v", ms)
	}
	ms = api.MembersResponse{}
	e.c.Do(t, "GET", "/v1/groups/"+gid+"/members?limit=2&after=bob", e.user(t, "dave"), nil).Decode(t, &ms)
	if len(ms.Members) != 1 || ms.Members[0].UserID != "dave" || ms.After != "" {
		t.Fatalf("members page 2: %+v", ms)
	}

	// Dissolved: nothing more can be sent.
	e.groupCall(t, "alice", "DELETE", "/v1/groups/"+gid, nil, 200)
	if r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "bob"), groupText(gid, "b-late", "hello?")); r.Status != 403 && r.Status != 410 {
		t.Fatalf("send to a dissolved group: %d %s", r.Status, r.Body)
	}
}
