package push

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/route"
)

// stuckServer is a Server whose message tier takes every call and never
// answers until the test ends; hit gets one value per call.
func stuckServer(t *testing.T) (*Server, chan struct{}) {
	t.Helper()
	hit := make(chan struct{}, 64)
	release := make(chan struct{})
	tier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	key := []byte("acks-test-internal-key-acks-test-key!!")
	uv, _ := auth.NewVerifier(auth.KindUser, key)
	iv, _ := auth.NewVerifier(auth.KindInternal, key)
	ts, _ := route.NewTokenSource(key, "n1")
	s, err := New(Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: tier.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); s.Close(); tier.Close() })
	return s, hit
}

func awaitHit(t *testing.T, hit chan struct{}) {
	t.Helper()
	select {
	case <-hit:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivered call reached the message tier")
	}
}

func TestAckerBoundedWhileMessageTierIsStuck(t *testing.T) {
	s, hit := stuckServer(t)
	s.acks.add("u", "d", []protocol.AckItem{{ConvID: "p:u:v", Seq: 1}})
	awaitHit(t, hit) // the acker now waits for the stuck tier
	items := make([]protocol.AckItem, protocol.MaxAcksPerFrame)
	for f := 0; f*len(items) < ackMaxHeld+5000; f++ {
		for i := range items {
			items[i] = protocol.AckItem{ConvID: fmt.Sprintf("p:u:v%d", f*len(items)+i), Seq: 1}
		}
		s.acks.add("u", "d", items)
	}
	s.acks.mu.Lock()
	held := len(s.acks.pending)
	s.acks.mu.Unlock()
	if held > ackMaxHeld {
		t.Fatalf("%d acks held behind a stuck flush, want at most %d", held, ackMaxHeld)
	}
}

func TestCloseDoesNotWaitForStuckMessageTier(t *testing.T) {
	s, hit := stuckServer(t)
	s.acks.add("u", "d", []protocol.AckItem{{ConvID: "p:u:v", Seq: 1}})
	awaitHit(t, hit)
	// A second ack waits for the final flush at Close.
	s.acks.add("u", "d", []protocol.AckItem{{ConvID: "p:u:w", Seq: 1}})
	closed := make(chan struct{})
	start := time.Now()
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(ackFinalTimeout + 2*time.Second):
		t.Fatalf("Close still waiting %v after it was called", time.Since(start))
	}
}
