package push

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// sweepPeriod is how often the sweep runs, hence how late after its
// deadline (login, idle, token expiry) a connection may be closed.
func (s *Server) sweepPeriod() time.Duration {
	return min(s.opt.Heartbeat/2, s.opt.SweepEvery)
}

// sweep enforces the login and idle timeouts and token expiry: one loop
// over the connections every sweepPeriod, no timer per connection.
func (s *Server) sweep() {
	t := time.NewTicker(s.sweepPeriod())
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		for _, c := range s.snapshot() {
			s.sweepOne(c, now)
		}
	}
}

func (s *Server) sweepOne(c *conn, now int64) {
	switch c.state.Load() {
	case stateLogin:
		if now-c.created > int64(s.opt.LoginTimeout) {
			c.fail(protocol.ErrUnauthenticated, protocol.ClosePolicy, "no login frame in time")
		}
	case stateActive:
		if now-max(c.lastRead.Load(), c.created) > int64(s.idleTimeout()) {
			c.fail(protocol.ErrIdleTimeout, protocol.CloseGoingAway, "no heartbeat in time")
		} else if now >= c.expires.Load() {
			c.fail(protocol.ErrTokenExpired, protocol.ClosePolicy, "token expired; reconnect with a fresh token")
		}
	}
}

func (s *Server) drainFrame() []byte {
	return encodeServerFrame(&protocol.ServerFrame{
		Type:          protocol.FrameDrain,
		Error:         &protocol.Error{Code: protocol.ErrDraining, Message: "node shutting down; reconnect"},
		ReconnectInMs: rand.Int64N(1000),
	})
}

// Drain stops accepting, then closes every connection with a drain frame,
// spread evenly over spread (so clients do not reconnect all at once), and
// waits until they are gone or ctx ends (then the rest are cut). Call it
// after deregistering the node; close presence afterwards.
func (s *Server) Drain(ctx context.Context, spread time.Duration) {
	s.draining.Store(true)
	s.lnMu.Lock()
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.lnMu.Unlock()
	conns := s.snapshot()
	s.log.Info("draining", "connections", len(conns), "spread", spread)
	var timers []*time.Timer
	for _, c := range conns {
		c := c
		d := time.Duration(0)
		if spread > 0 {
			d = rand.N(spread)
		}
		timers = append(timers, time.AfterFunc(d, func() {
			c.closeWith(s.drainFrame(), protocol.CloseGoingAway, protocol.ErrDraining)
		}))
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.count.Load() > 0 {
		select {
		case <-ctx.Done():
			for _, tm := range timers {
				tm.Stop()
			}
			left := s.snapshot()
			s.log.Warn("drain grace over; cutting connections", "left", len(left))
			for _, c := range left {
				c.teardown()
			}
			return
		case <-t.C:
		}
	}
}

// Close stops the background loops and flushes pending delivered acks.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.poll.close()
	})
	s.wg.Wait()
	for _, c := range s.snapshot() {
		c.teardown()
	}
}
