package push

import (
	"os"
	"testing"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/route"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestCloseReleasesEpoll: a closed Server gives its epoll descriptor back.
func TestCloseReleasesEpoll(t *testing.T) {
	key := []byte("poller-test-key-poller-test-key-poller")
	uv, _ := auth.NewVerifier(auth.KindUser, key)
	iv, _ := auth.NewVerifier(auth.KindInternal, key)
	ts, _ := route.NewTokenSource(key, "n1")
	before := openFDs(t)
	const servers = 8
	for i := 0; i < servers; i++ {
		s, err := New(Options{NodeID: "n1", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if leaked := openFDs(t) - before; leaked >= servers {
		t.Fatalf("%d descriptors more after %d servers came and went", leaked, servers)
	}
}
