package message_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

// Invariant 2: the same (sender, client_msg_id) stores one message and
// answers the same msg_id — at once, a second later, and after the message
// process restarted; other content under the same id is a 409.
func TestIdempotentSend(t *testing.T) {
	e := newEnv(t, 3)
	e.start(t, server.RoleAll)
	req := text("bob", "c-1", "hello")
	first := e.send(t, "alice", req)
	if first.Seq == nil || first.Duplicate || first.MsgID == "" {
		t.Fatalf("first send: %+v", first)
	}
	check := func(when string) {
		t.Helper()
		again := e.send(t, "alice", req)
		if again.MsgID != first.MsgID || again.Seq == nil || *again.Seq != *first.Seq || !again.Duplicate {
			t.Fatalf("retry %s: %+v, first %+v", when, again, first)
		}
	}
	check("at once")
	time.Sleep(time.Second)
	check("after a second")
	if err := e.proc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	e.start(t, server.RoleAll)
	check("after a restart")

	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), text("bob", "c-1", "different"))
	if r.Status != 409 || r.Code() != protocol.ErrIdempotencyClash {
		t.Fatalf("same client_msg_id, other content: %d %s", r.Status, r.Body)
	}
	r = e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), text("carol", "c-1", "hello"))
	if r.Status != 409 {
		t.Fatalf("same client_msg_id, other recipient: %d %s", r.Status, r.Body)
	}
	// Another sender may use the same client_msg_id.
	if other := e.send(t, "bob", text("alice", "c-1", "hello")); other.MsgID == first.MsgID {
		t.Fatal("client_msg_id is scoped per sender")
	}
	conv := model.ConvID("alice", "bob")
	e.waitPersisted(t, conv, 2)
	h := e.history(t, "alice", conv, 100)
	if len(h) != 2 || h[0].Message.MsgID != first.MsgID || h[0].Seq != *first.Seq {
		t.Fatalf("history after retries: %+v", h)
	}
}

// A retry whose first attempt's outcome is unknown (claimed, never
// produced) waits out the lease, then produces a Retry record; the pipeline
// drops it if the original was persisted.
func TestRetryAfterUnknownOutcome(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	// A first attempt that crashed after producing but before recording
	// its offset: claim the key and produce the record by hand.
	first := e.send(t, "alice", text("bob", "c-0", "warm up"))
	_ = first
	e.waitPersisted(t, conv, 1)
	sim := simulateCrashedAttempt(t, e, "alice", "bob", "c-x", "lost answer", time.Now().Add(-time.Hour))
	e.waitPersisted(t, conv, 2)
	again := e.send(t, "alice", text("bob", "c-x", "lost answer"))
	if again.MsgID != sim.msgID() || !again.Duplicate {
		t.Fatalf("retry answered %+v, want msg_id %s", again, sim.msgID())
	}
	// A claimed key inside the lease answers 503 with Retry-After.
	simulateClaimOnly(t, e, "alice", "bob", "c-y", "in flight", time.Now())
	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), text("bob", "c-y", "in flight"))
	if r.Status != 503 || r.Code() != protocol.ErrUnavailable {
		t.Fatalf("retry inside the lease: %d %s", r.Status, r.Body)
	}
	// Force a Retry record for c-x through the log: the pipeline must drop it.
	produceRetry(t, e, sim)
	// A claim that never reached the log, an hour old: the retry produces
	// (Retry set) and the pipeline persists it, once.
	simulateClaimOnly(t, e, "alice", "bob", "c-w", "never produced", time.Now().Add(-time.Hour))
	w := e.send(t, "alice", text("bob", "c-w", "never produced"))
	if !w.Duplicate || w.Seq != nil {
		t.Fatalf("retry of a never-produced claim: %+v", w)
	}
	marker := e.send(t, "alice", text("bob", "c-z", "after the duplicate"))
	e.waitPersisted(t, conv, 4)
	h := e.history(t, "alice", conv, 100)
	var ids []string
	for _, ev := range h {
		ids = append(ids, ev.Message.ClientMsgID)
	}
	if strings.Join(ids, ",") != "c-0,c-x,c-w,c-z" || h[3].Message.MsgID != marker.MsgID || h[2].Message.MsgID != w.MsgID {
		t.Fatalf("history %v: the retried copy must be dropped", ids)
	}
}

// Invariant 7: bad input gets a 4xx with a stable code, and nothing is
// stored or produced.
func TestBadInputs(t *testing.T) {
	e := newEnv(t, 2, func(c *cfgT) { c.MaxMessageBytes = 256 })
	e.start(t, server.RoleAll)
	alice := e.user(t, "alice")
	svc := tokenFor(t, e.keys.Service, "crm")
	internal := tokenFor(t, e.keys.Internal, "push-1")
	expired, _ := e.keys.User.Sign("alice", -time.Hour)
	forged := alice[:len(alice)-3] + "abc"
	wrongKey, _ := mustSigner(t, auth.KindUser, []byte(strings.Repeat("k", 32))).Sign("alice", time.Hour)
	serviceAsUser, _ := mustSigner(t, auth.KindUser, mustKey(t, e.cfg.ServiceKeyFile)).Sign("alice", time.Hour)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"knd": "user", "sub": "alice", "iss": auth.Issuer,
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	good := `{"to":"bob","client_msg_id":"c-1","type":"text","body":{"text":"hi"}}`
	cases := []struct {
		name, method, path, token, body string
		hdr                             []string
		status                          int
		code                            string
	}{
		{"malformed json", "POST", "/v1/messages", alice, `{"to":"bob",`, nil, 400, protocol.ErrBadJSON},
		{"not an object", "POST", "/v1/messages", alice, `[1,2]`, nil, 400, protocol.ErrInvalidField},
		{"trailing data", "POST", "/v1/messages", alice, good + `{}`, nil, 400, protocol.ErrBadJSON},
		{"unknown field", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"hi"},"priority":1}`, nil, 400, protocol.ErrUnknownField},
		{"unknown body field", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"hi","html":"x"}}`, nil, 400, protocol.ErrUnknownField},
		{"missing to", "POST", "/v1/messages", alice, `{"client_msg_id":"c","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrMissingField},
		{"empty to", "POST", "/v1/messages", alice, `{"to":"","client_msg_id":"c","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrMissingField},
		{"self recipient", "POST", "/v1/messages", alice, `{"to":"alice","client_msg_id":"c","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrInvalidField},
		{"bad recipient", "POST", "/v1/messages", alice, `{"to":"b:ob","client_msg_id":"c","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrInvalidField},
		{"missing client_msg_id", "POST", "/v1/messages", alice, `{"to":"bob","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrMissingField},
		{"bad client_msg_id", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"a b","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrInvalidField},
		{"missing type", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","body":{"text":"hi"}}`, nil, 400, protocol.ErrMissingField},
		{"unknown type", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"gif","body":{"text":"hi"}}`, nil, 400, protocol.ErrInvalidField},
		{"missing body", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text"}`, nil, 400, protocol.ErrMissingField},
		{"empty text", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{}}`, nil, 400, protocol.ErrInvalidField},
		{"image without url", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"image","body":{"text":"x"}}`, nil, 400, protocol.ErrInvalidField},
		{"wrong field type", "POST", "/v1/messages", alice, `{"to":7,"client_msg_id":"c","type":"text","body":{"text":"hi"}}`, nil, 400, protocol.ErrInvalidField},
		{"oversize content", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"` + strings.Repeat("x", 300) + `"}}`, nil, 413, protocol.ErrTooLarge},
		{"oversize body", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"x"},"pad":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, protocol.ErrTooLarge},
		{"invalid utf-8", "POST", "/v1/messages", alice, "{\"to\":\"bob\",\"client_msg_id\":\"c\",\"type\":\"text\",\"body\":{\"text\":\"\xff\xfe\"}}", nil, 400, protocol.ErrInvalidUTF8},
		{"no token", "POST", "/v1/messages", "", good, nil, 401, protocol.ErrUnauthenticated},
		{"expired token", "POST", "/v1/messages", expired, good, nil, 401, protocol.ErrUnauthenticated},
		{"forged token", "POST", "/v1/messages", forged, good, nil, 401, protocol.ErrUnauthenticated},
		{"wrong-key token", "POST", "/v1/messages", wrongKey, good, nil, 401, protocol.ErrUnauthenticated},
		{"user token signed with the service key", "POST", "/v1/messages", serviceAsUser, good, nil, 401, protocol.ErrUnauthenticated},
		{"alg none", "POST", "/v1/messages", none, good, nil, 401, protocol.ErrUnauthenticated},
		{"user acting for another user", "POST", "/v1/messages", alice, good, []string{auth.HeaderActAs, "carol"}, 403, protocol.ErrForbidden},
		{"service token without act-as", "POST", "/v1/messages", svc, good, nil, 403, protocol.ErrForbidden},
		{"service token bad act-as", "POST", "/v1/messages", svc, good, []string{auth.HeaderActAs, "x/y"}, 403, protocol.ErrForbidden},
		{"bad device header", "POST", "/v1/messages", alice, good, []string{auth.HeaderDevice, "d:1"}, 400, protocol.ErrInvalidField},
		{"reading another user's conversation", "GET", "/v1/conversations/p:bob:carol/messages", alice, "", nil, 403, protocol.ErrForbidden},
		{"syncing another's conversation via act-as", "GET", "/v1/sync", alice, "", []string{auth.HeaderActAs, "bob"}, 403, protocol.ErrForbidden},
		{"malformed conversation id", "GET", "/v1/conversations/alice/messages", alice, "", nil, 400, protocol.ErrInvalidField},
		{"read of another user's conversation", "POST", "/v1/conversations/p:bob:carol/read", alice, `{"seq":1}`, nil, 403, protocol.ErrForbidden},
		{"recall in another user's conversation", "POST", "/v1/conversations/p:bob:carol/recall", alice, `{"seq":1}`, nil, 403, protocol.ErrForbidden},
		{"read without seq", "POST", "/v1/conversations/p:alice:bob/read", alice, `{}`, nil, 400, protocol.ErrMissingField},
		{"read negative seq", "POST", "/v1/conversations/p:alice:bob/read", alice, `{"seq":-1}`, nil, 400, protocol.ErrInvalidField},
		{"page over 100", "GET", "/v1/sync?limit=101", alice, "", nil, 400, protocol.ErrInvalidField},
		{"history page over 100", "GET", "/v1/conversations/p:alice:bob/messages?limit=500", alice, "", nil, 400, protocol.ErrInvalidField},
		{"bad sync cursor", "GET", "/v1/sync?cursor=garbage", alice, "", nil, 400, protocol.ErrInvalidField},
		{"bad unread cursor", "GET", "/v1/unread?cursor=garbage", alice, "", nil, 400, protocol.ErrInvalidField},
		{"delivered with a user token", "POST", protocol.DeliveredPath, alice, `{"acks":[{"conv_id":"p:alice:bob","user_id":"alice","seq":1}]}`, nil, 403, protocol.ErrForbidden},
		{"delivered for a non-participant", "POST", protocol.DeliveredPath, internal, `{"acks":[{"conv_id":"p:alice:bob","user_id":"carol","seq":1}]}`, nil, 400, protocol.ErrInvalidField},
		{"delivered empty", "POST", protocol.DeliveredPath, internal, `{"acks":[]}`, nil, 400, protocol.ErrMissingField},
		{"presence with a user token", "GET", "/v1/presence/bob", alice, "", nil, 403, protocol.ErrForbidden},
		{"unknown endpoint", "GET", "/v1/nope", alice, "", nil, 404, protocol.ErrNotFound},
	}
	before := e.logEnd(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.c.Do(t, c.method, c.path, c.token, c.body, c.hdr...)
			if r.Status != c.status || r.Code() != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
		})
	}
	if after := e.logEnd(t); after != before {
		t.Fatalf("bad inputs produced %d records", after-before)
	}
	// Nothing stored: no conversation rows, and every client_msg_id used
	// above is still free (a valid send with it is a first send).
	for _, u := range []string{"alice", "bob", "carol"} {
		list, err := e.st.Conversations(t.Context(), u, "", false, 10)
		if err != nil || len(list) != 0 {
			t.Fatalf("%s has conversations after bad inputs: %+v %v", u, list, err)
		}
	}
	for _, cmid := range []string{"c", "c-1"} {
		if r := e.send(t, "alice", text("bob", cmid, "now valid")); r.Duplicate {
			t.Fatalf("client_msg_id %s was claimed by a refused request", cmid)
		}
	}
	// A service token acting for alice with a device header is fine.
	r := e.c.Do(t, "POST", "/v1/messages", svc, text("bob", "c-svc", "from the CRM"), auth.HeaderActAs, "alice", auth.HeaderDevice, "crm-1")
	if r.Status != 200 {
		t.Fatalf("service send: %d %s", r.Status, r.Body)
	}
	var sr api.SendResponse
	r.Decode(t, &sr)
	if sr.ConvID != model.ConvID("alice", "bob") {
		t.Fatalf("service send conv %s", sr.ConvID)
	}
}
