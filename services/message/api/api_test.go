package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/mlog"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// Unit tests of the handlers that need no store (presence, delivered
// bounds); everything else is tested against the real stack in
// services/message.

type fakeDir map[string][]presence.Session

func (d fakeDir) Sessions(u string) []presence.Session { return d[u] }
func (d fakeDir) Node(string) (presence.Node, bool)    { return presence.Node{}, false }

type fakeProducer struct {
	mu   sync.Mutex
	recs []model.Record
}

func (p *fakeProducer) Produce(key string, v []byte, _ ...mlog.Header) (int32, int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := model.Decode(v, 1<<20)
	if err != nil || key != r.ConvID {
		return 0, 0, fmt.Errorf("bad record: %v", err)
	}
	p.recs = append(p.recs, r)
	return 0, int64(len(p.recs)), nil
}

type noStore struct{ Store }

func (noStore) PersistedHeads(context.Context) ([]int64, error) { return nil, nil }

// fakeLastMsgSeq is the last message seq of every conversation of noStore.
const fakeLastMsgSeq = 1000

func (noStore) Conversation(_ context.Context, _, conv string) (store.ConvState, bool, error) {
	return store.ConvState{ConvID: conv, LastSeq: fakeLastMsgSeq, LastMsgSeq: fakeLastMsgSeq}, true, nil
}

// fakeTimelineEnd is the last seq of every conversation's history in
// noStore: ahead of the conversation rows, as while the pipeline's index
// trails its pushes.
const fakeTimelineEnd = fakeLastMsgSeq + 10

func (noStore) TimelineHas(_ context.Context, _ string, seq int64) (bool, error) {
	return seq <= fakeTimelineEnd, nil
}

func newTestServer(t *testing.T) (*httptest.Server, *fakeProducer, map[auth.Kind]*auth.Signer) {
	t.Helper()
	signers := map[auth.Kind]*auth.Signer{}
	a := &auth.Authenticator{}
	for i, k := range []auth.Kind{auth.KindUser, auth.KindService, auth.KindInternal} {
		key := []byte(strings.Repeat(fmt.Sprint(i), 32))
		s, _ := auth.NewSigner(k, key)
		v, _ := auth.NewVerifier(k, key)
		signers[k] = s
		switch k {
		case auth.KindUser:
			a.User = v
		case auth.KindService:
			a.Service = v
		case auth.KindInternal:
			a.Internal = v
		}
	}
	p := &fakeProducer{}
	srv := &Server{Auth: a, Store: noStore{}, Producer: p, Partitions: 4, MaxMessageBytes: 1024, RecallWindow: time.Minute,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Presence: fakeDir{"bob": {{UserID: "bob", DeviceID: "phone", Terminal: "ios", NodeID: "n1", SinceMs: 5}}}}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, p, signers
}

func call(t *testing.T, ts *httptest.Server, method, path, tok, body string) (int, string, map[string]any) {
	t.Helper()
	return callWith(t, ts, method, path, tok, body, nil)
}

func callWith(t *testing.T, ts *httptest.Server, method, path, tok, body string, hdr map[string]string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	code, _ := m["code"].(string)
	return resp.StatusCode, code, m
}

func TestPresence(t *testing.T) {
	ts, _, s := newTestServer(t)
	svc, _ := s[auth.KindService].Sign("crm", time.Minute)
	user, _ := s[auth.KindUser].Sign("alice", time.Minute)
	st, _, m := call(t, ts, "GET", "/v1/presence/bob", svc, "")
	if st != 200 || m["online"] != true || len(m["terminals"].([]any)) != 1 {
		t.Fatalf("bob: %d %v", st, m)
	}
	st, _, m = call(t, ts, "GET", "/v1/presence/carol", svc, "")
	if st != 200 || m["online"] != false {
		t.Fatalf("carol: %d %v", st, m)
	}
	st, _, m = call(t, ts, "POST", "/v1/presence/online", svc, `{"users":["carol","bob","bob"]}`)
	if st != 200 || fmt.Sprint(m["online"]) != "[bob]" {
		t.Fatalf("online: %d %v", st, m)
	}
	if st, code, _ := call(t, ts, "GET", "/v1/presence/bob", user, ""); st != 403 || code != protocol.ErrForbidden {
		t.Fatalf("user token: %d %s", st, code)
	}
	many := `{"users":["` + strings.Repeat(`u","`, 1000) + `u"]}`
	if st, code, _ := call(t, ts, "POST", "/v1/presence/online", svc, many); st != 413 || code != protocol.ErrTooLarge {
		t.Fatalf("1001 users: %d %s", st, code)
	}
	if st, code, _ := call(t, ts, "GET", "/v1/presence/b:ob", svc, ""); st != 400 || code != protocol.ErrInvalidField {
		t.Fatalf("bad user: %d %s", st, code)
	}
}

func TestDeliveredBoundsAndCoalescing(t *testing.T) {
	ts, p, s := newTestServer(t)
	in, _ := s[auth.KindInternal].Sign("push-1", time.Minute)
	var acks []string
	for i := range 1001 {
		acks = append(acks, fmt.Sprintf(`{"conv_id":"p:alice:bob","user_id":"bob","device_id":"d","seq":%d}`, i))
	}
	if st, code, _ := call(t, ts, "POST", protocol.DeliveredPath, in, `{"acks":[`+strings.Join(acks, ",")+`]}`); st != 413 || code != protocol.ErrTooLarge {
		t.Fatalf("1001 acks: %d %s", st, code)
	}
	if len(p.recs) != 0 {
		t.Fatal("refused batch produced records")
	}
	st, _, m := call(t, ts, "POST", protocol.DeliveredPath, in, `{"acks":[`+strings.Join(acks[:999], ",")+`,{"conv_id":"p:alice:carol","user_id":"alice","seq":3}]}`)
	if st != 200 || m["records"] != float64(2) || len(p.recs) != 2 {
		t.Fatalf("coalescing: %d %v, %d records", st, m, len(p.recs))
	}
	for _, r := range p.recs {
		if r.Kind != protocol.KindDelivered || (r.From == "bob" && r.RefSeq != 998) {
			t.Fatalf("record %+v", r)
		}
	}
	// A bad ack anywhere refuses the whole batch.
	if st, _, _ := call(t, ts, "POST", protocol.DeliveredPath, in, `{"acks":[{"conv_id":"p:alice:bob","user_id":"bob","seq":1},{"conv_id":"p:alice:bob","user_id":"bob","seq":-1}]}`); st != 400 || len(p.recs) != 2 {
		t.Fatalf("bad ack: %d, %d records", st, len(p.recs))
	}
	// Each device's highest ack is its own record, unread and unchecked:
	// the pipeline decides which acknowledge a message.
	st, _, m = call(t, ts, "POST", protocol.DeliveredPath, in, fmt.Sprintf(`{"acks":[
		{"conv_id":"p:alice:bob","user_id":"bob","device_id":"phone","seq":%d},
		{"conv_id":"p:alice:bob","user_id":"bob","device_id":"web","seq":7},
		{"conv_id":"p:alice:bob","user_id":"bob","device_id":"web","seq":5},
		{"conv_id":"p:alice:dan","user_id":"dan","seq":%d}]}`, fakeTimelineEnd+1, model.MaxSeq))
	if st != 200 || m["records"] != float64(3) || len(p.recs) != 5 {
		t.Fatalf("one record per device: %d %v, %d records", st, m, len(p.recs))
	}
	var got []string
	for _, r := range p.recs[2:] {
		got = append(got, fmt.Sprintf("%s/%s@%d", r.From, r.DeviceID, r.RefSeq))
	}
	slices.Sort(got) // produced concurrently
	if want := []string{fmt.Sprintf("bob/phone@%d", fakeTimelineEnd+1), "bob/web@7", fmt.Sprintf("dan/@%d", model.MaxSeq)}; !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

// A read mark beyond the user's conversation row is checked in the
// history: accepted when it holds the seq, refused (nothing produced)
// beyond it.
func TestReadMarkAheadOfConversationRow(t *testing.T) {
	ts, p, s := newTestServer(t)
	tok, _ := s[auth.KindUser].Sign("bob", time.Minute)
	tests := []struct {
		seq     int
		status  int
		records int
	}{
		{fakeLastMsgSeq, 200, 1},
		{fakeLastMsgSeq + 5, 200, 2},
		{fakeTimelineEnd + 1, 400, 2},
	}
	for _, tc := range tests {
		st, code, _ := call(t, ts, "POST", "/v1/conversations/p:alice:bob/read", tok, fmt.Sprintf(`{"seq":%d}`, tc.seq))
		if st != tc.status || len(p.recs) != tc.records {
			t.Fatalf("read %d: %d %s, %d records; want %d, %d records", tc.seq, st, code, len(p.recs), tc.status, tc.records)
		}
	}
}

type blockingStore struct {
	Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Conversations(context.Context, string, string, bool, int) ([]store.ConvState, error) {
	b.entered <- struct{}{}
	<-b.release
	return nil, nil
}

// userAuth is an authenticator of user tokens and a token of user's it
// accepts.
func userAuth(t testing.TB, user string) (*auth.Authenticator, string) {
	t.Helper()
	key := []byte(strings.Repeat("k", 32))
	v, err := auth.NewVerifier(auth.KindUser, key)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := auth.NewSigner(auth.KindUser, key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sg.Sign(user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Authenticator{User: v}, tok
}

// Requests beyond MaxInFlight are refused at once, not queued.
func TestMaxInFlight(t *testing.T) {
	authn, tok := userAuth(t, "alice")
	bs := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	srv := &Server{Auth: authn, Store: bs, MaxInFlight: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	done := make(chan int)
	go func() {
		st, _, _ := call(t, ts, "GET", "/v1/conversations", tok, "")
		done <- st
	}()
	<-bs.entered
	if st, code, _ := call(t, ts, "GET", "/v1/conversations", tok, ""); st != 503 || code != protocol.ErrUnavailable {
		t.Fatalf("second request: %d %s", st, code)
	}
	close(bs.release)
	if st := <-done; st != 200 {
		t.Fatalf("first request: %d", st)
	}
}
