package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestDo(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		emptyOK bool
		raw     bool
		want    string // out.A, or the raw body
		wantErr string // "" or an *APIError's Code, or "decode"
	}{
		{name: "decoded", status: 200, body: `{"a":"x"}`, want: "x"},
		{name: "raw body", status: 200, body: `not json`, raw: true, want: "not json"},
		{name: "empty allowed", status: 200, emptyOK: true},
		{name: "empty refused", status: 200, wantErr: "decode"},
		{name: "protocol error", status: 404, body: `{"code":"not_found","message":"m"}`, wantErr: "not_found"},
		{name: "plain text error", status: 502, body: "bad gateway\n", wantErr: "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Extra") != "v" ||
					r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/p" {
					http.Error(w, "bad request headers or path", http.StatusTeapot)
					return
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c := Caller{HTTP: srv.Client(), BaseURL: srv.URL + "/", Token: "tok", MaxBody: 1 << 20, EmptyOK: tt.emptyOK}
			var out struct{ A string }
			var raw json.RawMessage
			var dst any = &out
			if tt.raw {
				dst = &raw
			}
			err := c.Do(context.Background(), http.MethodPost, "/p", map[string]string{"X-Extra": "v"}, map[string]int{"n": 1}, dst)
			var ae *APIError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Do: %v", err)
			case tt.wantErr == "decode" && (err == nil || errors.As(err, &ae)):
				t.Fatalf("Do = %v, want a decode error", err)
			case tt.wantErr != "" && tt.wantErr != "decode" && (!errors.As(err, &ae) || ae.Code != tt.wantErr || ae.Status != tt.status):
				t.Fatalf("Do = %v, want an APIError %d %s", err, tt.status, tt.wantErr)
			}
			got := out.A
			if tt.raw {
				got = string(raw)
			}
			if got != tt.want {
				t.Fatalf("out = %q, want %q", got, tt.want)
			}
		})
	}
}
