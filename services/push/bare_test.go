package push_test

import (
	"net"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

// bareNode runs a push node without etcd: pres may be nil (no presence).
// It returns the node and its WebSocket URL.
func bareNode(t *testing.T, messageURL string, pres push.Presence, mod func(*push.Options)) (*push.Server, string) {
	t.Helper()
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "n1")
	opt := push.Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: messageURL}
	if mod != nil {
		mod(&opt)
	}
	srv, err := push.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if pres != nil {
		srv.SetPresence(pres)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); srv.Close() })
	return srv, "ws://" + ln.Addr().String() + "/"
}

// userToken signs an hour's user token.
func userToken(t *testing.T, user string) string {
	t.Helper()
	s, _ := auth.NewSigner(auth.KindUser, userKey)
	tok, err := s.Sign(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
