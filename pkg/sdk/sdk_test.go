package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/imcluster/imcluster/services/protocol"
)

func TestClientCallsTheAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer svc" {
			w.WriteHeader(401)
			_ = json.NewEncoder(w).Encode(protocol.Error{Code: protocol.ErrUnauthenticated, Message: "no"})
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/messages":
			var m Message
			_ = json.NewDecoder(r.Body).Decode(&m)
			if r.Header.Get(protocol.HeaderActAs) != "shop" || m.To != "amy" || m.ClientMsgID != "o-1" {
				w.WriteHeader(400)
				_ = json.NewEncoder(w).Encode(protocol.Error{Code: protocol.ErrInvalidField, Message: "bad"})
				return
			}
			_, _ = w.Write([]byte(`{"msg_id":"m1","conv_id":"p:amy:shop","seq":7,"sent_at_ms":1}`))
		case "GET /v1/presence/amy":
			_, _ = w.Write([]byte(`{"user_id":"amy","online":true,"terminals":[{"device_id":"p","terminal":"ios","since_ms":1},{"device_id":"w","terminal":"web","since_ms":2}]}`))
		case "POST /v1/presence/online":
			_, _ = w.Write([]byte(`{"online":["amy"]}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := New(srv.URL, "svc")
	res, err := c.SendPrivateMessage(ctx, "shop", Message{To: "amy", ClientMsgID: "o-1", Type: protocol.TypeText, Body: protocol.Body{Text: "your order shipped"}})
	if err != nil || res.MsgID != "m1" || res.Seq == nil || *res.Seq != 7 {
		t.Fatalf("send: %+v %v", res, err)
	}
	if on, err := c.IsOnline(ctx, "amy"); err != nil || !on {
		t.Fatalf("is online: %v %v", on, err)
	}
	if ts, err := c.OnlineTerminals(ctx, "amy"); err != nil || len(ts) != 2 || ts[0] != "ios" {
		t.Fatalf("terminals: %v %v", ts, err)
	}
	if us, err := c.OnlineUsers(ctx, []string{"amy", "bo"}); err != nil || len(us) != 1 {
		t.Fatalf("online users: %v %v", us, err)
	}
	_, err = New(srv.URL, "wrong").IsOnline(ctx, "amy")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != protocol.ErrUnauthenticated {
		t.Fatalf("bad token: %v", err)
	}
}

// A Client built without New (no HTTP client, a trailing slash) works.
func TestHandBuiltClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/presence/amy" {
			w.WriteHeader(404)
			return
		}
		_, _ = w.Write([]byte(`{"user_id":"amy","online":true}`))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/", Token: "svc"}
	if on, err := c.IsOnline(context.Background(), "amy"); err != nil || !on {
		t.Fatalf("is online: %v %v", on, err)
	}
}

// Clients from New share one HTTP client (one connection pool) unless
// given their own.
func TestNewSharesTheHTTPClient(t *testing.T) {
	a, b := New("http://message:8080", "svc"), New("http://other:8080/", "svc2")
	if a.httpClient() != defaultHTTP || b.httpClient() != defaultHTTP {
		t.Fatalf("New's clients use %p and %p, want the shared %p", a.httpClient(), b.httpClient(), defaultHTTP)
	}
	own := &http.Client{}
	c := New("http://message:8080", "svc")
	c.HTTP = own
	if c.httpClient() != own {
		t.Fatal("a Client's own HTTP client is not used")
	}
}
