package push

import (
	"github.com/imcluster/imcluster/services/protocol"
)

// refresh handles a refresh frame: a fresh token of the session's user
// moves the session's expiry, answered by a refreshed frame. A bad or
// expired token closes the session with unauthenticated, another user's
// with forbidden: nothing else about the session changes. false when the
// connection is finished.
func (s *Server) refresh(c *conn, token string) bool {
	if token == "" {
		c.fail(protocol.ErrMissingField, protocol.ClosePolicy, "refresh needs a token")
		return false
	}
	user, exp, err := s.opt.Users.VerifyExpiry(token)
	if err != nil {
		c.fail(protocol.ErrUnauthenticated, protocol.ClosePolicy, "bad or expired token")
		return false
	}
	if user != c.sess.UserID {
		c.fail(protocol.ErrForbidden, protocol.ClosePolicy, "refresh token is for another user")
		return false
	}
	c.expires.Store(exp.UnixNano())
	s.met.refreshes.Inc()
	return c.enqueue(encodeServerFrame(&protocol.ServerFrame{Type: protocol.FrameRefreshed, ExpiresAtMs: exp.UnixMilli()}))
}
