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
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
)

// fastSweep makes a node close expired sessions within 100 ms.
func fastSweep(o *push.Options) { o.SweepEvery = 100 * time.Millisecond }

// loginWith logs r in with tok and returns the welcome.
func loginWith(t *testing.T, r rawConn, tok, device string) protocol.ServerFrame {
	t.Helper()
	b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: tok, DeviceID: device, Terminal: "web"})
	r.send(t, ws.OpText, b)
	f := r.next(t)
	if f.Type != protocol.FrameWelcome {
		t.Fatalf("got %+v, want welcome", f)
	}
	return f
}

// next reads the next server frame.
func (r rawConn) next(t *testing.T) protocol.ServerFrame {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := wsutil.ReadServerText(r)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	var f protocol.ServerFrame
	if err := json.Unmarshal(p, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestExpiredTokenEndsSession(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", fastSweep)
	r := dialRaw(t, n.wsURL)
	tok := c.token("olga", 2*time.Second)
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	_, tokExp, err := uv.VerifyExpiry(tok)
	if err != nil {
		t.Fatal(err)
	}
	// exp has whole seconds: the token lives (1, 2] s, less the login's
	// time, so the welcome is checked against the token, not the clock.
	w := loginWith(t, r, tok, "olga-1")
	exp := time.UnixMilli(w.ExpiresAtMs)
	if !exp.Equal(tokExp) {
		t.Fatalf("welcome says the token expires at %v, the token says %v", exp, tokExp)
	}
	c.waitSessions("olga", 1)
	// Heartbeats keep the session alive; the token does not.
	go func() {
		for i := 0; i < 40; i++ {
			if wsutil.WriteClientText(r, []byte(`{"type":"ping"}`)) != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if got := r.closedWith(t); got != protocol.ErrTokenExpired {
		t.Fatalf("closed with %q, want token_expired", got)
	}
	if late := time.Since(exp); late < 0 || late > time.Second {
		t.Fatalf("closed %v after the token's expiry, want within a second", late)
	}
	c.waitSessions("olga", 0)
}

func TestRefreshFrame(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", fastSweep)
	otherKey, _ := auth.NewSigner(auth.KindUser, []byte("another-key-another-key-another-key!!"))
	forged, _ := otherKey.Sign("pia", time.Hour)
	cases := []struct {
		name, token string
		want        string // close code; "" = refreshed
	}{
		{"fresh token of the same user", c.token("pia", time.Hour), ""},
		{"another user's token", c.token("quinn", time.Hour), protocol.ErrForbidden},
		{"expired token", c.token("pia", -time.Hour), protocol.ErrUnauthenticated},
		{"forged token", forged, protocol.ErrUnauthenticated},
		{"no token", "", protocol.ErrMissingField},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, n.wsURL)
			loginWith(t, r, c.token("pia", 2*time.Second), "pia-"+string(rune('a'+i)))
			b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameRefresh, Token: tc.token})
			r.send(t, ws.OpText, b)
			if tc.want != "" {
				if got := r.closedWith(t); got != tc.want {
					t.Fatalf("closed with %q, want %q", got, tc.want)
				}
				return
			}
			f := r.next(t)
			if f.Type != protocol.FrameRefreshed || time.Until(time.UnixMilli(f.ExpiresAtMs)) < 59*time.Minute {
				t.Fatalf("got %+v, want refreshed with an expiry an hour away", f)
			}
			// Past the first token's expiry the session lives on.
			for i := 0; i < 30; i++ {
				r.send(t, ws.OpText, []byte(`{"type":"ping"}`))
				if f := r.next(t); f.Type != protocol.FramePong {
					t.Fatalf("got %+v, want pong", f)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// tokenSource mints short tokens for user; while failing is set it errs.
type tokenSource struct {
	c       *cluster
	user    string
	ttl     time.Duration
	calls   atomic.Int32
	failing atomic.Bool
}

func (s *tokenSource) get(context.Context) (string, error) {
	s.calls.Add(1)
	if s.failing.Load() {
		return "", errors.New("token service down")
	}
	return s.c.token(s.user, s.ttl), nil
}

type sessions struct {
	mu    sync.Mutex
	conns int
	disc  []error
	ch    chan struct{}
}

func (s *sessions) connected(protocol.ServerFrame) {
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *sessions) lost(err error) {
	s.mu.Lock()
	s.disc = append(s.disc, err)
	s.mu.Unlock()
}

func (s *sessions) await(t *testing.T, what string, d time.Duration) {
	t.Helper()
	select {
	case <-s.ch:
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestClientKeepsSessionPastTokenExpiry(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", fastSweep)
	src := &tokenSource{c: c, user: "rita", ttl: 2 * time.Second}
	ss := &sessions{ch: make(chan struct{}, 8)}
	cl := client.New(client.Config{URLs: []string{n.wsURL}, TokenSource: src.get, DeviceID: "rita-1", Terminal: "ios",
		NoSync: true, OnConnect: ss.connected, OnDisconnect: ss.lost})
	cl.Start()
	t.Cleanup(cl.Close)
	ss.await(t, "login", 10*time.Second)
	first := cl.ExpiresAt()

	// Refreshed on the socket: one session, several tokens, no disconnect
	// (checked two seconds past the first token's expiry).
	time.Sleep(time.Until(first.Add(2 * time.Second)))
	ss.mu.Lock()
	conns, disc := ss.conns, len(ss.disc)
	ss.mu.Unlock()
	if conns != 1 || disc != 0 || src.calls.Load() < 3 || !cl.ExpiresAt().After(first) {
		t.Fatalf("%d logins, %d disconnects, %d tokens, expiry %v → %v: want one session refreshed in place",
			conns, disc, src.calls.Load(), first, cl.ExpiresAt())
	}

	// The token source fails: the session expires, and the client comes
	// back with a fresh token once the source works again.
	src.failing.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ss.mu.Lock()
		d := len(ss.disc)
		ss.mu.Unlock()
		if d > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end at its token's expiry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	src.failing.Store(false)
	ss.await(t, "the second login", 15*time.Second)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var se *client.ServerError
	if !errors.As(ss.disc[0], &se) || se.Code != protocol.ErrTokenExpired {
		t.Fatalf("disconnected with %v, want token_expired", ss.disc[0])
	}
}

func TestClientWithoutTokenSourceStopsAtExpiry(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-a", fastSweep)
	cl := client.New(client.Config{URLs: []string{n.wsURL}, Token: c.token("sam", 2*time.Second), DeviceID: "sam-1",
		Terminal: "ios", NoSync: true})
	cl.Start()
	t.Cleanup(cl.Close)
	select {
	case <-cl.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not stop after its token expired")
	}
	var se *client.ServerError
	if !errors.As(cl.Err(), &se) || se.Code != protocol.ErrTokenExpired {
		t.Fatalf("stopped with %v, want token_expired", cl.Err())
	}
}
