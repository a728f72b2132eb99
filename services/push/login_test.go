package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
)

// slowPresence holds every Login until release is closed, and records
// what is still logged in.
type slowPresence struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	live    map[int64]bool // epoch → registered
	changed chan struct{}
}

func (p *slowPresence) Login(ctx context.Context, s presence.Session) (*presence.Session, error) {
	p.entered <- struct{}{}
	<-p.release
	p.mu.Lock()
	p.live[s.Epoch] = true
	p.mu.Unlock()
	return nil, nil
}

func (p *slowPresence) Logout(ctx context.Context, s presence.Session) error {
	p.mu.Lock()
	delete(p.live, s.Epoch)
	p.mu.Unlock()
	p.changed <- struct{}{}
	return nil
}

// TestSessionClosedDuringPresenceLoginIsLoggedOut: a connection the sweep
// closes while its presence entry is being written must not leave that
// entry behind (it would say the device is online for as long as the node
// lives).
func TestSessionClosedDuringPresenceLoginIsLoggedOut(t *testing.T) {
	pres := &slowPresence{entered: make(chan struct{}, 1), release: make(chan struct{}), live: map[int64]bool{}, changed: make(chan struct{}, 4)}
	srv, url := bareNode(t, "http://127.0.0.1:1", pres, func(o *push.Options) {
		o.LoginTimeout, o.SweepEvery = 300*time.Millisecond, 20*time.Millisecond
	})
	r := dialRaw(t, url)
	b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: userToken(t, "vera"), DeviceID: "v1", Terminal: "web"})
	r.send(t, ws.OpText, b)
	<-pres.entered
	// The login deadline passes while presence is being written: the sweep closes it.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Connections() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not close the connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(pres.release)
	select {
	case <-pres.changed:
	case <-time.After(5 * time.Second):
	}
	pres.mu.Lock()
	defer pres.mu.Unlock()
	if len(pres.live) != 0 {
		t.Fatalf("presence still holds the closed session: %v", pres.live)
	}
}

// flakyPresence fails every Login while down is set.
type flakyPresence struct{ down atomic.Bool }

func (p *flakyPresence) Login(context.Context, presence.Session) (*presence.Session, error) {
	if p.down.Load() {
		return nil, errors.New("etcd unreachable")
	}
	return nil, nil
}

func (p *flakyPresence) Logout(context.Context, presence.Session) error { return nil }

// TestFailedLoginKicksNobody: a second login on the same terminal that
// fails (presence down) must leave the working session alone — a kicked
// device does not reconnect.
func TestFailedLoginKicksNobody(t *testing.T) {
	pres := &flakyPresence{}
	srv, url := bareNode(t, "http://127.0.0.1:1", pres, nil)
	first := dialRaw(t, url)
	loginWith(t, first, userToken(t, "xena"), "xena-1")
	pres.down.Store(true)
	second := dialRaw(t, url)
	b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: userToken(t, "xena"), DeviceID: "xena-2", Terminal: "web"})
	second.send(t, ws.OpText, b)
	if got := second.closedWith(t); got != protocol.ErrUnavailable {
		t.Fatalf("failed login closed with %q, want unavailable", got)
	}
	first.send(t, ws.OpText, []byte(`{"type":"ping"}`))
	if f := first.next(t); f.Type != protocol.FramePong {
		t.Fatalf("the first session got %+v, want pong: it was kicked by a login that failed", f)
	}
	if srv.EpochOf("xena", "xena-1") == 0 {
		t.Fatal("the first session is no longer reachable for deliveries")
	}
}
