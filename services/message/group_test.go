package message_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
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
	// His unread pull starts at his join too.
	var unread api.UnreadResponse
	e.c.Do(t, "GET", "/v1/unread", e.user(t, "dave"), nil).Decode(t, &unread)
	if got := eventsOf(unread.Events, conv); len(got) != 4 || got[0] != fmt.Sprintf("group:%d", joinSeq) {
		t.Fatalf("dave's unread pull %v: want from his join on", got)
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

// TestGroupBadInputs: every group route refuses bad input and forbidden
// actions with a stable code, and none of them puts anything in the log
// or changes the group.
func TestGroupBadInputs(t *testing.T) {
	e := newEnv(t, 2)
	e.start(t, "all")
	e.groupCall(t, "alice", "POST", "/v1/groups", api.CreateGroupRequest{GroupID: "g1", Name: "G", Members: []string{"bob", "carl"}}, 201)
	e.groupCall(t, "alice", "PUT", "/v1/groups/g1/members/carl/role", api.RoleRequest{Role: protocol.RoleAdmin}, 200)
	alice, bob, carl, eve := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carl"), e.user(t, "eve")
	long := strings.Repeat("n", model.MaxGroupNameLen+1)
	var many []string
	for i := range model.MaxUsersPerChange + 1 {
		many = append(many, fmt.Sprintf("u%d", i))
	}
	manyJSON, _ := json.Marshal(map[string][]string{"users": many})
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"create: no name", "POST", "/v1/groups", alice, `{"group_id":"g2"}`, 400, protocol.ErrMissingField},
		{"create: long name", "POST", "/v1/groups", alice, `{"name":"` + long + `"}`, 400, protocol.ErrInvalidField},
		{"create: bad id", "POST", "/v1/groups", alice, `{"group_id":"a:b","name":"x"}`, 400, protocol.ErrInvalidField},
		{"create: bad member", "POST", "/v1/groups", alice, `{"name":"x","members":["b b"]}`, 400, protocol.ErrInvalidField},
		{"create: member twice", "POST", "/v1/groups", alice, `{"name":"x","members":["bob","bob"]}`, 400, protocol.ErrInvalidField},
		{"create: unknown field", "POST", "/v1/groups", alice, `{"name":"x","topic":"y"}`, 400, protocol.ErrUnknownField},
		{"create: taken id", "POST", "/v1/groups", eve, `{"group_id":"g1","name":"G"}`, 409, protocol.ErrExists},
		{"create: too many members", "POST", "/v1/groups", alice, `{"name":"x","members":` + string(mustJSON(t, many)) + `}`, 400, protocol.ErrInvalidField},
		{"create: no token", "POST", "/v1/groups", "", `{"name":"x"}`, 401, protocol.ErrUnauthenticated},
		{"get: outsider", "GET", "/v1/groups/g1", eve, "", 403, protocol.ErrNotMember},
		{"get: no such group", "GET", "/v1/groups/nope", alice, "", 404, protocol.ErrNotFound},
		{"get: bad id", "GET", "/v1/groups/a:b", alice, "", 400, protocol.ErrInvalidField},
		{"update: member", "PATCH", "/v1/groups/g1", bob, `{"name":"mine"}`, 403, protocol.ErrForbidden},
		{"update: nothing", "PATCH", "/v1/groups/g1", alice, `{}`, 400, protocol.ErrMissingField},
		{"update: empty name", "PATCH", "/v1/groups/g1", alice, `{"name":""}`, 400, protocol.ErrInvalidField},
		{"update: outsider", "PATCH", "/v1/groups/g1", eve, `{"name":"x"}`, 403, protocol.ErrNotMember},
		{"dissolve: admin", "DELETE", "/v1/groups/g1", carl, "", 403, protocol.ErrForbidden},
		{"dissolve: member", "DELETE", "/v1/groups/g1", bob, "", 403, protocol.ErrForbidden},
		{"add: member", "POST", "/v1/groups/g1/members", bob, `{"users":["dan"]}`, 403, protocol.ErrForbidden},
		{"add: no users", "POST", "/v1/groups/g1/members", alice, `{"users":[]}`, 400, protocol.ErrInvalidField},
		{"add: too many", "POST", "/v1/groups/g1/members", alice, string(manyJSON), 400, protocol.ErrInvalidField},
		{"add: bad user", "POST", "/v1/groups/g1/members", alice, `{"users":["x/y"]}`, 400, protocol.ErrInvalidField},
		{"remove: member removes member", "DELETE", "/v1/groups/g1/members/carl", bob, "", 403, protocol.ErrForbidden},
		{"remove: admin removes owner", "DELETE", "/v1/groups/g1/members/alice", carl, "", 403, protocol.ErrForbidden},
		{"remove: not a member", "DELETE", "/v1/groups/g1/members/eve", alice, "", 404, protocol.ErrNotFound},
		{"leave: owner", "DELETE", "/v1/groups/g1/members/alice", alice, "", 403, protocol.ErrForbidden},
		{"role: admin sets roles", "PUT", "/v1/groups/g1/members/bob/role", carl, `{"role":"admin"}`, 403, protocol.ErrForbidden},
		{"role: unknown role", "PUT", "/v1/groups/g1/members/bob/role", alice, `{"role":"king"}`, 400, protocol.ErrInvalidField},
		{"role: no role", "PUT", "/v1/groups/g1/members/bob/role", alice, `{}`, 400, protocol.ErrMissingField},
		{"role: own role", "PUT", "/v1/groups/g1/members/alice/role", alice, `{"role":"member"}`, 404, protocol.ErrNotFound},
		{"members: outsider", "GET", "/v1/groups/g1/members", eve, "", 403, protocol.ErrNotMember},
		{"members: page over 100", "GET", "/v1/groups/g1/members?limit=101", alice, "", 400, protocol.ErrInvalidField},
		{"my groups: bad after", "GET", "/v1/groups?after=a:b", alice, "", 400, protocol.ErrInvalidField},
		{"send: to and group_id", "POST", "/v1/messages", alice, `{"to":"bob","group_id":"g1","client_msg_id":"c","type":"text","body":{"text":"x"}}`, 400, protocol.ErrInvalidField},
		{"send: bad group_id", "POST", "/v1/messages", alice, `{"group_id":"a:b","client_msg_id":"c","type":"text","body":{"text":"x"}}`, 400, protocol.ErrInvalidField},
		{"send: group without body", "POST", "/v1/messages", alice, `{"group_id":"g1","client_msg_id":"c","type":"text"}`, 400, protocol.ErrMissingField},
		{"send: outsider", "POST", "/v1/messages", eve, `{"group_id":"g1","client_msg_id":"c","type":"text","body":{"text":"x"}}`, 403, protocol.ErrNotMember},
		{"send: no such group", "POST", "/v1/messages", alice, `{"group_id":"nope","client_msg_id":"c","type":"text","body":{"text":"x"}}`, 404, protocol.ErrNotFound},
		{"send: @all by a member", "POST", "/v1/messages", bob, `{"group_id":"g1","client_msg_id":"c","type":"text","body":{"text":"x","mentions":["all"]}}`, 403, protocol.ErrForbidden},
		{"send: mentions in 1:1", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"x","mentions":["bob"]}}`, 400, protocol.ErrInvalidField},
		{"send: bad mention", "POST", "/v1/messages", alice, `{"group_id":"g1","client_msg_id":"c","type":"text","body":{"text":"x","mentions":["a b"]}}`, 400, protocol.ErrInvalidField},
		{"history: outsider", "GET", "/v1/conversations/g:g1/messages", eve, "", 403, protocol.ErrNotMember},
		{"history: bad group conv", "GET", "/v1/conversations/g:a:b/messages", alice, "", 400, protocol.ErrInvalidField},
		{"read: outsider", "POST", "/v1/conversations/g:g1/read", eve, `{"seq":0}`, 403, protocol.ErrNotMember},
		{"recall: outsider", "POST", "/v1/conversations/g:g1/recall", eve, `{"seq":0}`, 403, protocol.ErrNotMember},
		{"recall: a group event", "POST", "/v1/conversations/g:g1/recall", alice, `{"seq":0}`, 404, protocol.ErrNotFound},
	}
	before := e.logEnd(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.c.Do(t, c.method, c.path, c.token, c.body)
			if r.Status != c.status || r.Code() != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
		})
	}
	if after := e.logEnd(t); after != before {
		t.Fatalf("bad inputs produced %d records", after-before)
	}
	var g api.GroupResponse
	e.c.Do(t, "GET", "/v1/groups/g1", alice, nil).Decode(t, &g)
	if g.Group.Name != "G" || g.Group.Members != 3 || g.Group.Owner != "alice" || g.Group.Dissolved {
		t.Fatalf("the group changed: %+v", g.Group)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGroupRecall: a member recalls their own message within the window,
// not someone else's; an admin recalls anyone's message at any time; every
// member sees the recall and history shows the message recalled.
func TestGroupRecall(t *testing.T) {
	e := newEnv(t, 2, func(c *cfgT) { c.RecallWindow = time.Minute })
	e.start(t, "all")
	const gid = "rc"
	conv := model.GroupConvID(gid)
	e.groupCall(t, "ann", "POST", "/v1/groups", api.CreateGroupRequest{GroupID: gid, Name: "R", Members: []string{"bo", "cy"}}, 201)
	own := e.send(t, "bo", groupText(gid, "bo-1", "oops"))
	other := e.send(t, "cy", groupText(gid, "cy-1", "keep me"))
	old := e.send(t, "cy", groupText(gid, "cy-2", "old news"))
	e.waitConsumed(t)
	recall := func(as string, seq int64) msgtest.Resp {
		return e.c.Do(t, "POST", "/v1/conversations/"+url.PathEscape(conv)+"/recall", e.user(t, as), map[string]int64{"seq": seq})
	}
	if r := recall("bo", *other.Seq); r.Status != 403 || r.Code() != protocol.ErrForbidden {
		t.Fatalf("a member recalled another's message: %d %s", r.Status, r.Body)
	}
	if r := recall("bo", *own.Seq); r.Status != 200 {
		t.Fatalf("own recall: %d %s", r.Status, r.Body)
	}
	e.skew.Store(int64(2 * time.Minute)) // past the window
	if r := recall("cy", *old.Seq); r.Status != 403 || r.Code() != protocol.ErrRecallExpired {
		t.Fatalf("a member's recall past the window: %d %s", r.Status, r.Body)
	}
	if r := recall("ann", *old.Seq); r.Status != 200 { // the owner moderates, any time
		t.Fatalf("the owner's recall past the window: %d %s", r.Status, r.Body)
	}
	e.waitConsumed(t)
	for _, u := range []string{"ann", "bo", "cy"} {
		evs, _ := e.syncAll(t, u, "", 100)
		var recalls []int64
		for _, ev := range evs {
			if ev.Kind == protocol.KindRecall && ev.ConvID == conv {
				recalls = append(recalls, ev.RefSeq)
			}
		}
		if !slices.Equal(recalls, []int64{*own.Seq, *old.Seq}) {
			t.Fatalf("%s's recalls %v, want %d and %d", u, recalls, *own.Seq, *old.Seq)
		}
	}
	for _, ev := range e.history(t, "cy", conv, 10) {
		if ev.Kind != protocol.KindMessage {
			continue
		}
		want := ev.Seq == *own.Seq || ev.Seq == *old.Seq
		if ev.Message.Recalled != want || (want && ev.Message.Body != nil) {
			t.Fatalf("history at %d: recalled=%v body=%v", ev.Seq, ev.Message.Recalled, ev.Message.Body)
		}
	}
}
