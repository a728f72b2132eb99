package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
)

// syncStore answers Sync with err (nil: an empty last page).
type syncStore struct {
	noStore
	err error
}

func (s syncStore) Sync(_ context.Context, _ string, cur model.SyncCursor, _ int) (store.SyncPage, error) {
	return store.SyncPage{Next: cur}, s.err
}

// An expired cursor is a stable 410 cursor_expired; other store failures
// stay 503 unavailable.
func TestSyncCursorExpired(t *testing.T) {
	authn, tok := userAuth(t, "bob")
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		{nil, http.StatusOK, ""},
		{fmt.Errorf("x: %w", store.ErrCursorExpired), http.StatusGone, protocol.ErrCursorExpired},
		{fmt.Errorf("cassandra down"), http.StatusServiceUnavailable, protocol.ErrUnavailable},
	}
	for _, tc := range tests {
		srv := &Server{Auth: authn, Store: syncStore{err: tc.err}, Partitions: 4,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		ts := httptest.NewServer(srv.Handler())
		status, code, _ := call(t, ts, http.MethodGet, "/v1/sync", tok, "")
		ts.Close()
		if status != tc.wantStatus || code != tc.wantCode {
			t.Errorf("store error %v: got %d %q, want %d %q", tc.err, status, code, tc.wantStatus, tc.wantCode)
		}
	}
}
