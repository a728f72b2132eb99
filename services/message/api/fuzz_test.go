package api

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Whatever a client sends, the send endpoint answers 200 with exactly one
// record in the log, or 400/413 with none — and every record it accepts is
// one the pipeline decodes (the fake producer decodes each record as the
// pipeline does and refuses, i.e. 503, what it could not store). Run longer:
// go test -run=^$ -fuzz=FuzzSendRequest ./services/message/api/
func FuzzSendRequest(f *testing.F) {
	authn, tok := userAuth(f, "alice")
	for _, s := range []string{
		`{"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`,
		`{"to":"bob","client_msg_id":"c1","type":"image","body":{"url":"https://x/y.png","width":3,"height":4},"attempt":1}`,
		`{"to":"bob","client_msg_id":"c1","type":"text","body":{"text":"hi"},"attempt":2}`,
		`{"to":"alice","client_msg_id":"c1","type":"text","body":{"text":"hi"}}`,
		`{"to":"bob","client_msg_id":"a b","type":"text","body":{"text":"\xff"}}`,
		`{"to":"bob"`,
	} {
		f.Add([]byte(s))
	}
	p := &fakeProducer{}
	srv := &Server{Auth: authn, Store: &lookupStore{}, Producer: p, MaxMessageBytes: 1024,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		before := len(p.recs)
		req := httptest.NewRequest(http.MethodPost, "/v1/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		produced := len(p.recs) - before
		switch {
		case w.Code == http.StatusOK && produced == 1:
		case (w.Code == http.StatusBadRequest || w.Code == http.StatusRequestEntityTooLarge) && produced == 0:
		default:
			t.Fatalf("body %q: answered %d %s with %d records produced", body, w.Code, w.Body.Bytes(), produced)
		}
	})
}
