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

func retryOf(req api.SendRequest, attempt int) api.SendRequest {
	req.Attempt = attempt
	return req
}

// Invariant 2: the same (sender, client_msg_id) stores one message and
// answers the same msg_id — at once, a second later, and after the message
// process restarted; other content under the same id is a 409 once the
// first is stored, and a rejected event to the sender's devices when the
// reuse is not marked as a retry.
func TestIdempotentSend(t *testing.T) {
	e := newEnv(t, 3)
	e.start(t, server.RoleAll)
	req := text("bob", "c-1", "hello")
	first := e.send(t, "alice", req)
	if first.Seq == nil || first.Duplicate || first.MsgID != model.MessageID("alice", "c-1") {
		t.Fatalf("first send: %+v, want seq and msg_id %s", first, model.MessageID("alice", "c-1"))
	}
	// At once: the retry may find the message stored or produce again;
	// either way the same msg_id.
	if again := e.send(t, "alice", retryOf(req, 2)); again.MsgID != first.MsgID {
		t.Fatalf("retry at once: %+v, first %+v", again, first)
	}
	conv := model.ConvID("alice", "bob")
	e.waitPersisted(t, conv, 1)
	check := func(when string) {
		t.Helper()
		again := e.send(t, "alice", retryOf(req, 3))
		if again.MsgID != first.MsgID || again.Seq == nil || *again.Seq != *first.Seq || !again.Duplicate {
			t.Fatalf("retry %s: %+v, first %+v", when, again, first)
		}
	}
	check("once stored")
	if err := e.proc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	e.start(t, server.RoleAll)
	check("after a restart")

	r := e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(text("bob", "c-1", "different"), 2))
	if r.Status != 409 || r.Code() != protocol.ErrIdempotencyClash {
		t.Fatalf("same client_msg_id, other content: %d %s", r.Status, r.Body)
	}
	r = e.c.Do(t, "POST", "/v1/messages", e.user(t, "alice"), retryOf(text("carol", "c-1", "hello"), 2))
	if r.Status != 409 {
		t.Fatalf("same client_msg_id, other recipient: %d %s", r.Status, r.Body)
	}
	// Another sender may use the same client_msg_id.
	if other := e.send(t, "bob", text("alice", "c-1", "hello")); other.MsgID == first.MsgID {
		t.Fatal("client_msg_id is scoped per sender")
	}
	// A reuse the API cannot see (not marked as a retry): accepted into the
	// log, not stored, and reported to alice's devices.
	clash := e.send(t, "alice", text("bob", "c-1", "reused on a first attempt"))
	e.waitPersisted(t, conv, 2)
	h := e.history(t, "alice", conv, 100)
	if len(h) != 2 || h[0].Message.MsgID != first.MsgID || h[0].Seq != *first.Seq {
		t.Fatalf("history after retries: %+v", h)
	}
	events, _ := e.syncAll(t, "alice", "", 100)
	var rejected []protocol.Event
	for _, ev := range events {
		if ev.Kind == protocol.KindRejected {
			rejected = append(rejected, ev)
		}
	}
	if len(rejected) != 1 || rejected[0].Seq != *clash.Seq || rejected[0].RefSeq != *first.Seq ||
		rejected[0].Message.Body.Text != "reused on a first attempt" {
		t.Fatalf("alice's rejected events %+v: want one for seq %d referring to %d", rejected, *clash.Seq, *first.Seq)
	}
	if bobs, _ := e.syncAll(t, "bob", "", 100); len(bobs) != 2 {
		t.Fatalf("bob's feed %+v: want the two stored messages only", bobs)
	}
}

// Copies of one send in the log — a retry produced again while its
// original was still in flight or unseen, and a copy days later — are
// stored once: the first in log order.
func TestCopiesInTheLogStoredOnce(t *testing.T) {
	e := newEnv(t, 1)
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	// The retry reached the log before its original (a held produce).
	retry := record("alice", "bob", "c-x", "held original", time.Now())
	retry.Retry = true
	produceRecord(t, e, retry)
	produceRecord(t, e, record("alice", "bob", "c-x", "held original", time.Now().Add(-time.Minute)))
	e.waitConsumed(t)
	// Days later, after a restart (nothing in memory): a retry's copy.
	if err := e.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	e.start(t, server.RoleAll)
	produceRecord(t, e, record("alice", "bob", "c-x", "held original", time.Now().Add(72*time.Hour)))
	marker := e.send(t, "alice", text("bob", "c-z", "after the copies"))
	e.waitPersisted(t, conv, 2)
	h := e.history(t, "alice", conv, 100)
	if len(h) != 2 || h[0].Message.ClientMsgID != "c-x" || h[0].Message.MsgID != model.MessageID("alice", "c-x") ||
		h[1].Message.MsgID != marker.MsgID {
		t.Fatalf("history %+v: want c-x once, then the marker", h)
	}
	again := e.send(t, "alice", retryOf(text("bob", "c-x", "held original"), 5))
	if !again.Duplicate || again.Seq == nil || *again.Seq != h[0].Seq {
		t.Fatalf("late retry answered %+v, want the stored seq %d", again, h[0].Seq)
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
		{"negative attempt", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"hi"},"attempt":-1}`, nil, 400, protocol.ErrInvalidField},
		{"attempt not a number", "POST", "/v1/messages", alice, `{"to":"bob","client_msg_id":"c","type":"text","body":{"text":"hi"},"attempt":"2"}`, nil, 400, protocol.ErrInvalidField},
		{"bad attempt header", "POST", "/v1/messages", alice, good, []string{"Idempotency-Attempt", "two"}, 400, protocol.ErrInvalidField},
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
