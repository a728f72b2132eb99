package push

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/route"
)

// TestHandshakesCountTowardCapacity: connections that never send their
// upgrade request are bounded: beyond MaxConnections plus the slack, a
// new connection is closed at once instead of holding a goroutine and a
// buffer until the login timeout.
func TestHandshakesCountTowardCapacity(t *testing.T) {
	key := []byte("handshake-test-key-handshake-test-key!")
	uv, _ := auth.NewVerifier(auth.KindUser, key)
	iv, _ := auth.NewVerifier(auth.KindInternal, key)
	ts, _ := route.NewTokenSource(key, "n1")
	s, err := New(Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: "http://127.0.0.1:1",
		MaxConnections: 2, LoginTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); s.Close() })
	limit := s.opt.MaxConnections + s.handshakeSlack()
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		return nc
	}
	for i := 0; i < limit; i++ {
		dial() // silent: never sends its upgrade request
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.handshaking.Load() < int64(limit) {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes under way, want %d", s.handshaking.Load(), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	extra := dial()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection beyond the bound got %v, want closed at once (EOF)", err)
	}
	if got := s.handshaking.Load(); got != int64(limit) {
		t.Fatalf("%d handshakes under way, want %d", got, limit)
	}
}
