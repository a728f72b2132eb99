package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// lookupStore answers LookupMessageID from a fixed row (or an error) and
// fails every other store call: the send path must not touch them.
type lookupStore struct {
	Store
	row     *store.StoredID
	err     error
	lookups atomic.Int64
}

func (s *lookupStore) LookupMessageID(context.Context, string) (store.StoredID, bool, error) {
	s.lookups.Add(1)
	if s.err != nil {
		return store.StoredID{}, false, s.err
	}
	if s.row == nil {
		return store.StoredID{}, false, nil
	}
	return *s.row, true, nil
}

// The send path by attempt: a first attempt only produces (no read, seq =
// its offset); a retry reads once and answers from the stored message, 409
// for other content, or produces again (no seq) when nothing is found or
// the store fails.
func TestSendPathsByAttempt(t *testing.T) {
	authn, tok := userAuth(t, "alice")
	hi := model.ContentHash("bob", protocol.TypeText, &protocol.Body{Text: "hi"})
	stored := &store.StoredID{ConvID: model.ConvID("alice", "bob"), Seq: 42, Hash: hi, AtMs: 7}
	other := &store.StoredID{ConvID: model.ConvID("alice", "bob"), Seq: 42, Hash: []byte("other"), AtMs: 7}
	body := func(attempt string) string {
		return `{"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}` + attempt + `}`
	}
	tests := []struct {
		name        string
		body        string
		header      string
		row         *store.StoredID
		storeErr    error
		wantStatus  int
		wantCode    string
		wantSeq     any // float64 or nil
		wantDup     any
		wantLookups int64
		wantProduce int
	}{
		{"first attempt, no attempt field", body(""), "", stored, nil, 200, "", float64(1), nil, 0, 1},
		{"first attempt", body(`,"attempt":1`), "", stored, nil, 200, "", float64(1), nil, 0, 1},
		{"retry finds its message", body(`,"attempt":2`), "", stored, nil, 200, "", float64(42), true, 1, 0},
		{"retry by header", body(""), "3", stored, nil, 200, "", float64(42), true, 1, 0},
		{"retry finds other content", body(`,"attempt":2`), "", other, nil, 409, protocol.ErrIdempotencyClash, nil, nil, 1, 0},
		{"retry finds nothing", body(`,"attempt":2`), "", nil, nil, 200, "", nil, nil, 1, 1},
		{"retry while the store fails", body(`,"attempt":2`), "", nil, errors.New("no hosts available"), 200, "", nil, nil, 1, 1},
		{"attempt out of range", body(`,"attempt":1001`), "", nil, nil, 400, protocol.ErrInvalidField, nil, nil, 0, 0},
		{"bad attempt header", body(""), "x", nil, nil, 400, protocol.ErrInvalidField, nil, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeProducer{}
			st := &lookupStore{row: tt.row, err: tt.storeErr}
			srv := &Server{Auth: authn, Store: st, Producer: p, MaxMessageBytes: 1024,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			hdr := map[string]string{}
			if tt.header != "" {
				hdr[HeaderAttempt] = tt.header
			}
			code, errCode, m := callWith(t, ts, "POST", "/v1/messages", tok, tt.body, hdr)
			if code != tt.wantStatus || errCode != tt.wantCode {
				t.Fatalf("answer %d %q %v, want %d %q", code, errCode, m, tt.wantStatus, tt.wantCode)
			}
			if code == 200 && (m["seq"] != tt.wantSeq || m["duplicate"] != tt.wantDup || m["msg_id"] != model.MessageID("alice", "c1")) {
				t.Errorf("answer %v, want seq %v duplicate %v msg_id %s", m, tt.wantSeq, tt.wantDup, model.MessageID("alice", "c1"))
			}
			if got := st.lookups.Load(); got != tt.wantLookups {
				t.Errorf("%d store reads, want %d", got, tt.wantLookups)
			}
			if len(p.recs) != tt.wantProduce {
				t.Fatalf("%d records produced, want %d", len(p.recs), tt.wantProduce)
			}
			if tt.wantProduce == 1 {
				r := p.recs[0]
				if r.MsgID != model.MessageID("alice", "c1") || r.Retry != (tt.wantLookups == 1) {
					t.Errorf("record %+v: want the derived msg_id, retry=%v", r, tt.wantLookups == 1)
				}
			}
		})
	}
}
