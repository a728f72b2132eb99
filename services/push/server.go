package push

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/route"
)

// Presence is the writer side of presence a Server needs
// (*presence.Registrar in production).
type Presence interface {
	Login(ctx context.Context, s presence.Session) (*presence.Session, error)
	Logout(ctx context.Context, s presence.Session) error
}

// Options configure a Server.
type Options struct {
	NodeID         string
	Users          *auth.Verifier     // verifies device login tokens
	Internal       *auth.Verifier     // verifies message-tier delivery calls
	InternalTokens *route.TokenSource // for calls to the message tier
	MessageURL     string             // base URL of the message tier
	// MessageTLS is the client TLS configuration of calls to an https://
	// MessageURL (nil: system roots; see tlsconf.ClientConfig).
	MessageTLS *tls.Config
	SendPath   string // its send endpoint (default /v1/messages)

	MaxConnections int
	Heartbeat      time.Duration // expected client heartbeat interval
	SendQueue      int           // frames queued per connection before slow_consumer
	ResyncAfter    time.Duration // told to devices: sync again this long after login

	FrameRate        float64 // frames/s a connection may send on average
	FrameBurst       int
	MaxInflightSends int32 // forwarded sends per connection awaiting an answer
	MaxForwarding    int32 // forwarded sends awaiting an answer on the whole node (default 4,096)
	LoginTimeout     time.Duration
	FrameReadTimeout time.Duration
	WriteTimeout     time.Duration
	// SweepEvery bounds the period of the sweep that closes connections
	// past their login, idle or token deadline (default 5s; it also runs
	// every Heartbeat/2 when that is shorter).
	SweepEvery time.Duration

	Log      *slog.Logger
	Registry prometheus.Registerer
}

func (o *Options) defaults() {
	if o.SendPath == "" {
		o.SendPath = "/v1/messages"
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 50000
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 30 * time.Second
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 256
	}
	if o.ResyncAfter <= 0 {
		o.ResyncAfter = 2 * time.Second
	}
	if o.FrameRate <= 0 {
		o.FrameRate = 50
	}
	if o.FrameBurst <= 0 {
		o.FrameBurst = 100
	}
	if o.MaxInflightSends <= 0 {
		o.MaxInflightSends = 32
	}
	if o.MaxForwarding <= 0 {
		o.MaxForwarding = 4096
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = 10 * time.Second
	}
	if o.FrameReadTimeout <= 0 {
		o.FrameReadTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Server is a push node: the WebSocket gateway plus the internal delivery
// endpoint. See doc.go.
type Server struct {
	opt     Options
	log     *slog.Logger
	met     *metrics
	poll    *poller
	pres    Presence
	acks    *acker
	logouts logoutQueue
	http    *http.Client

	mu       sync.RWMutex
	all      map[*conn]struct{}
	byDevice map[string]*conn // user \x00 device
	byTerm   map[string]*conn // user \x00 terminal
	count    atomic.Int64
	// handshaking counts accepted connections still in their upgrade.
	handshaking atomic.Int64

	forwarding atomic.Int32 // forwarded sends awaiting the message tier

	draining atomic.Bool
	lnMu     sync.Mutex
	lns      []net.Listener
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New returns a Server; call SetPresence, then Serve.
func New(opt Options) (*Server, error) {
	opt.defaults()
	if opt.Users == nil || opt.Internal == nil {
		return nil, errors.New("push: user and internal verifiers are required")
	}
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opt: opt, log: opt.Log, poll: p,
		met:      newMetrics(opt.Registry),
		all:      map[*conn]struct{}{},
		byDevice: map[string]*conn{},
		byTerm:   map[string]*conn{},
		stop:     make(chan struct{}),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 128, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			TLSClientConfig: opt.MessageTLS, TLSHandshakeTimeout: 5 * time.Second,
		}},
	}
	s.acks = newAcker(s)
	s.logouts.s = s
	s.met.gauges(s)
	s.wg.Add(3)
	go func() { defer s.wg.Done(); p.run(func(c *conn) { c.readable() }) }()
	go func() { defer s.wg.Done(); s.sweep() }()
	go func() { defer s.wg.Done(); s.acks.run(s.stop) }()
	return s, nil
}

// SetPresence sets the presence writer (it needs s.Kick, hence not in New).
func (s *Server) SetPresence(p Presence) { s.pres = p }

// Connections returns the number of open device connections.
func (s *Server) Connections() int { return int(s.count.Load()) }

// Draining reports whether Drain has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

func (s *Server) idleTimeout() time.Duration { return s.opt.Heartbeat * 5 / 2 }

// Serve accepts WebSocket connections on ln until ln is closed or Drain.
// A TLS listener (tls.NewListener) serves wss://; its connections are read
// by a goroutine each (see reader.go).
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	s.lns = append(s.lns, ln)
	s.lnMu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			fdOut := errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
			if errors.As(err, &ne) && ne.Timeout() || fdOut {
				// EMFILE and friends: back off instead of spinning.
				if fdOut {
					s.met.fdExhausted.Inc()
				}
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; backing off", "err", err, "delay", delay, "connections", s.count.Load())
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("while accepting: %w", err)
		}
		delay = 0
		// Connections still in their upgrade hold a goroutine and a read
		// buffer each, unauthenticated: they count toward the capacity,
		// with room for handshakeSlack more (so a node at capacity can
		// still answer at_capacity); beyond that they are closed at once.
		if s.count.Load()+s.handshaking.Load() >= int64(s.opt.MaxConnections+s.handshakeSlack()) {
			s.met.closedWith.WithLabelValues("handshake_capacity").Inc()
			_ = nc.Close()
			continue
		}
		s.handshaking.Add(1)
		go func() {
			defer s.handshaking.Add(-1)
			s.handshake(nc)
		}()
	}
}

// handshakeSlack is how many upgrades may be under way beyond
// MaxConnections.
func (s *Server) handshakeSlack() int { return min(1024, s.opt.MaxConnections) }

// maxHandshakeBytes bounds the HTTP upgrade request a device sends (its
// request line and headers): the upgrader reads header lines without a
// length limit, so without it one connection could send one endless header
// line for the whole LoginTimeout and grow a buffer with it.
const maxHandshakeBytes = 16 << 10

func (s *Server) handshake(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(s.opt.LoginTimeout))
	if tc, ok := nc.(*tls.Conn); ok {
		// Within the same deadline as the upgrade (slow handshakes hold a
		// goroutine, not a connection slot, like slow upgrades).
		if err := tc.Handshake(); err != nil {
			s.met.closedWith.WithLabelValues("bad_tls_handshake").Inc()
			_ = nc.Close()
			return
		}
	}
	limited := struct {
		io.Reader
		io.Writer
	}{io.LimitReader(nc, maxHandshakeBytes), nc}
	if _, err := (ws.Upgrader{}).Upgrade(limited); err != nil {
		s.met.closedWith.WithLabelValues("bad_handshake").Inc()
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{srv: s, nc: nc, created: time.Now().UnixNano()}
	if s.draining.Load() {
		s.track(c)
		c.closeWith(s.drainFrame(), protocol.CloseGoingAway, protocol.ErrDraining)
		return
	}
	if int(s.count.Load()) >= s.opt.MaxConnections {
		s.track(c)
		c.fail(protocol.ErrAtCapacity, protocol.CloseGoingAway, "node at capacity; reconnect elsewhere")
		return
	}
	s.track(c)
	if err := s.startReading(c); err != nil {
		s.log.Warn("cannot poll connection", "err", err)
		c.teardown()
	}
}

func (s *Server) track(c *conn) {
	s.mu.Lock()
	s.all[c] = struct{}{}
	s.mu.Unlock()
	s.count.Add(1)
	s.met.accepted.Inc()
}

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

// EpochOf returns the session epoch of (user, device) on this node, 0 when
// not connected (tests and tools).
func (s *Server) EpochOf(user, device string) int64 {
	if c := s.lookup(user, device); c != nil && c.state.Load() == stateActive {
		return c.sess.Epoch
	}
	return 0
}
