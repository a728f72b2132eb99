package push

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// SyncSpread is the window within which devices told to sync (a sync
	// frame: Resync) each pick a random moment (default 5s).
	SyncSpread time.Duration

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
	if o.SyncSpread <= 0 {
		o.SyncSpread = 5 * time.Second
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

// EpochOf returns the session epoch of (user, device) on this node, 0 when
// not connected (tests and tools).
func (s *Server) EpochOf(user, device string) int64 {
	if c := s.lookup(user, device); c != nil && c.state.Load() == stateActive {
		return c.sess.Epoch
	}
	return 0
}
