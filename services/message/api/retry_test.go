package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// retryStore holds a claimed (sender, cmid) whose first attempt is still
// recording its offset: the re-reads of a retry fail with a transient
// error failReads times, then find the offset recorded.
type retryStore struct {
	Store
	row       store.Idem
	failReads int64
	reads     atomic.Int64
}

func (s *retryStore) ClaimIdempotency(context.Context, string, string, store.Idem) (store.Idem, bool, error) {
	return s.row, false, nil // a retry: the row is the first attempt's
}

func (s *retryStore) ReadIdempotency(context.Context, string, string) (store.Idem, error) {
	if s.reads.Add(1) <= s.failReads {
		return store.Idem{}, errors.Join(errors.New("while reading idempotency key"), gocql.ErrTimeoutNoResponse)
	}
	row := s.row
	row.Produced, row.Off = true, 42
	return row, nil
}

// A retry whose first attempt is recording its offset answers that offset
// even when a re-read of the row fails once: reads are safe to repeat, and
// giving up sent the client away with 503 for the rest of the lease.
func TestRetryRereadsAfterATransientError(t *testing.T) {
	authn, tok := userAuth(t, "alice")
	body := `{"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`
	for _, fail := range []int64{0, 1, 3} {
		p := &fakeProducer{}
		srv := &Server{Auth: authn, Producer: p, MaxMessageBytes: 1024,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		st := &retryStore{failReads: fail, row: store.Idem{MsgID: "m1", ConvID: model.ConvID("alice", "bob"),
			Hash: model.ContentHash("bob", protocol.TypeText, &protocol.Body{Text: "hi"}), CreatedMs: time.Now().UnixMilli()}}
		srv.Store = st
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		code, errCode, m := call(t, ts, "POST", "/v1/messages", tok, body)
		if code != 200 || m["seq"] != float64(42) || m["duplicate"] != true {
			t.Errorf("%d failed re-reads: %d %s %v, want 200 with seq 42 as a duplicate", fail, code, errCode, m)
		}
		if len(p.recs) != 0 {
			t.Errorf("%d failed re-reads: the retry produced %d records, want none", fail, len(p.recs))
		}
	}
}
