package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

type seenSend struct {
	actAs, bearer, cmid string
}

// TestBenchSenderPaths sends one message each way and checks what reached
// the message tier: over HTTP with the user's own token, over the socket
// forwarded by the push node as that user.
func TestBenchSenderPaths(t *testing.T) {
	userKey := []byte("bench-user-key-bench-user-key-bench!!")
	internalKey := []byte("bench-internal-key-bench-internal-key")
	var mu sync.Mutex
	var seen []seenSend
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body client.SendRequest
		_ = json.NewDecoder(r.Body).Decode(&body)
		tok, _ := auth.BearerToken(r.Header.Get("Authorization"))
		mu.Lock()
		seen = append(seen, seenSend{r.Header.Get(protocol.HeaderActAs), tok, body.ClientMsgID})
		mu.Unlock()
		_, _ = w.Write([]byte(`{"msg_id":"m"}`))
	}))
	defer api.Close()
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "bench-node")
	srv, err := push.New(push.Options{NodeID: "bench-node", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: api.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	defer ln.Close()

	signer, _ := auth.NewSigner(auth.KindUser, userKey)
	users := []string{"u0", "u1"}
	tokens := make([]string, 2)
	for i, u := range users {
		tokens[i], _ = signer.Sign(u, time.Hour)
	}
	c := client.New(client.Config{URLs: []string{"ws://" + ln.Addr().String() + "/"}, Token: tokens[0], DeviceID: "d0", Terminal: "bench", NoSync: true})
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	clients := []*client.Client{c, nil}

	cases := []struct {
		via, cmid  string
		wantActAs  string
		userBearer bool
	}{
		{viaHTTP, "c-http", "", true},
		{viaWS, "c-ws", "u0", false},
	}
	for _, tc := range cases {
		send, err := benchSender(tc.via, api.URL, "hi", users, tokens, clients, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := send(ctx, 0, 1, "", tc.cmid); err != nil {
			t.Fatalf("%s: %v", tc.via, err)
		}
		mu.Lock()
		got := seen[len(seen)-1]
		mu.Unlock()
		if got.cmid != tc.cmid || got.actAs != tc.wantActAs || (got.bearer == tokens[0]) != tc.userBearer {
			t.Fatalf("%s: the message tier saw %+v", tc.via, got)
		}
	}
	if _, err := benchSender("carrier-pigeon", api.URL, "hi", users, tokens, clients, 4); err == nil {
		t.Fatal("an unknown --send-via was accepted")
	}
}
