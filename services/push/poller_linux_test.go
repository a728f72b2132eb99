package push

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

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

// TestStaleEpollEventIsDropped: an event epoll_wait returned for a
// connection torn down since must not reach the connection that now has
// its descriptor number (it would get a second reader).
func TestStaleEpollEventIsDropped(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.release()
	old := &conn{fd: 7, pollID: 1}
	p.conns[7] = old
	stale := unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7, Pad: old.pollID}
	if got := p.lookup(stale); got != old {
		t.Fatal("a live connection's event was not dispatched to it")
	}
	// old is torn down; a new connection gets descriptor 7.
	p.nextID = 1
	p.mu.Lock()
	delete(p.conns, 7)
	p.nextID++
	reuse := &conn{fd: 7, pollID: p.nextID}
	p.conns[7] = reuse
	p.mu.Unlock()
	if got := p.lookup(stale); got != nil {
		t.Fatal("a stale event reached the connection that reuses its descriptor")
	}
	if got := p.lookup(unix.EpollEvent{Events: unix.EPOLLIN, Fd: 7, Pad: reuse.pollID}); got != reuse {
		t.Fatal("the new connection's own event was not dispatched to it")
	}
}
