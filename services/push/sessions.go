package push

import (
	"context"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// login handles the login frame; false when the connection is finished.
func (s *Server) login(c *conn, f *protocol.ClientFrame) bool {
	user, exp, err := s.opt.Users.VerifyExpiry(f.Token)
	if err != nil {
		c.fail(protocol.ErrUnauthenticated, protocol.ClosePolicy, "bad or expired token")
		return false
	}
	if err := auth.ValidSubject(f.DeviceID); err != nil {
		c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "device_id: "+err.Error())
		return false
	}
	if err := presence.ValidTerminal(f.Terminal); err != nil {
		c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "terminal: "+err.Error())
		return false
	}
	now := time.Now()
	c.expires.Store(exp.UnixNano())
	sess := presence.Session{
		UserID: user, DeviceID: f.DeviceID, Terminal: f.Terminal,
		NodeID: s.opt.NodeID, Epoch: now.UnixNano(), SinceMs: now.UnixMilli(),
	}
	old, ok := s.claim(c, sess)
	if !ok {
		return false
	}
	if s.pres != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.pres.Login(ctx, c.sess)
		cancel()
		if err != nil {
			s.log.Warn("presence login failed", "user", user, "err", err)
			s.unclaim(c, old)
			c.fail(protocol.ErrUnavailable, protocol.CloseGoingAway, "presence unavailable; retry")
			return false
		}
	}
	// Only now: a login that failed must not have kicked a working session.
	for _, o := range old {
		if o != nil && o != c {
			s.kick(o)
		}
	}
	welcome := encodeServerFrame(&protocol.ServerFrame{
		Type: protocol.FrameWelcome, NodeID: s.opt.NodeID, UserID: user, Epoch: c.sess.Epoch,
		HeartbeatMs: s.opt.Heartbeat.Milliseconds(), ResyncAfterMs: s.opt.ResyncAfter.Milliseconds(),
		ExpiresAtMs: exp.UnixMilli(),
	})
	if !c.enqueue(welcome) {
		s.logout(c.sess) // closed while presence was written: forget skipped it
		return false
	}
	c.state.Store(stateActive)
	if c.isDone() {
		// Torn down (sweep, kick) during the presence write, before it was
		// active: forget may have skipped the logout. Twice is harmless.
		s.logout(c.sess)
		return false
	}
	s.met.logins.Inc()
	return true
}

// claim records sess on c and makes c the connection of its terminal and
// device, before the etcd write, so a kick that follows that write finds
// it. It returns the connections it replaced (terminal, device); false
// when c is already closed.
func (s *Server) claim(c *conn, sess presence.Session) ([2]*conn, bool) {
	kt, kd := sess.UserID+"\x00"+sess.Terminal, sess.UserID+"\x00"+sess.DeviceID
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.isDone() {
		return [2]*conn{}, false
	}
	c.sess = sess // under s.mu: forget reads it there
	old := [2]*conn{s.byTerm[kt], s.byDevice[kd]}
	s.byTerm[kt], s.byDevice[kd] = c, c
	return old, true
}

// unclaim gives the terminal and device back to the connections claim
// replaced, if they are still open and nobody claimed them since.
func (s *Server) unclaim(c *conn, old [2]*conn) {
	kt, kd := c.sess.UserID+"\x00"+c.sess.Terminal, c.sess.UserID+"\x00"+c.sess.DeviceID
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range []map[string]*conn{s.byTerm, s.byDevice} {
		k := [2]string{kt, kd}[i]
		if m[k] != c {
			continue
		}
		if o := old[i]; o != nil && !o.isDone() {
			m[k] = o
		} else {
			delete(m, k)
		}
	}
}

var kickFrame = encodeServerFrame(&protocol.ServerFrame{
	Type:  protocol.FrameKick,
	Error: &protocol.Error{Code: protocol.ErrKicked, Message: "the same terminal logged in elsewhere"},
})

func (s *Server) kick(c *conn) {
	s.met.kicks.Inc()
	s.met.closedWith.WithLabelValues(protocol.ErrKicked).Inc()
	c.closeWith(kickFrame, protocol.CloseGoingAway, protocol.ErrKicked)
}

// Kick closes the session (user, terminal) if it still has epoch; it is the
// presence.KickFunc of this node.
func (s *Server) Kick(userID, terminal string, epoch int64) {
	s.mu.RLock()
	c := s.byTerm[userID+"\x00"+terminal]
	s.mu.RUnlock()
	if c != nil && c.sess.Epoch == epoch {
		s.kick(c)
	}
}

// forget removes a finished connection everywhere.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	if _, ok := s.all[c]; ok {
		delete(s.all, c)
		s.count.Add(-1)
	}
	active := c.sess.UserID != ""
	if active {
		kd, kt := c.sess.UserID+"\x00"+c.sess.DeviceID, c.sess.UserID+"\x00"+c.sess.Terminal
		if s.byDevice[kd] == c {
			delete(s.byDevice, kd)
		}
		if s.byTerm[kt] == c {
			delete(s.byTerm, kt)
		}
	}
	s.mu.Unlock()
	// While draining, the node is out of the registry (routers skip it)
	// and the lease revoke at the end removes every session at once: no
	// per-connection etcd write for thousands of closing connections.
	if active && c.state.Load() == stateActive {
		s.logout(c.sess)
	}
}

// logout removes a session from presence in the background (not while
// draining: see forget).
func (s *Server) logout(sess presence.Session) {
	if s.pres == nil || s.draining.Load() {
		return
	}
	s.logouts.add(sess)
}

// lookup returns the connection of (user, device).
func (s *Server) lookup(user, device string) *conn {
	s.mu.RLock()
	c := s.byDevice[user+"\x00"+device]
	s.mu.RUnlock()
	return c
}

func (s *Server) snapshot() []*conn {
	s.mu.RLock()
	out := make([]*conn, 0, len(s.all))
	for c := range s.all {
		out = append(out, c)
	}
	s.mu.RUnlock()
	return out
}
