package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/services/protocol"
)

// Config configures a device Client.
type Config struct {
	URLs   []string // push node WebSocket URLs (ws://host:port/ or wss://); rotated on reconnect
	APIURL string   // message tier base URL (http:// or https://), for sync (empty: no sync)
	// TLS configures wss:// dials and, when HTTPClient is nil, https://
	// calls (nil: the system roots). To trust a private CA, see
	// tlsconf.ClientConfig. Verification is never skipped by default.
	TLS   *tls.Config
	Token string // user JWT (ignored when TokenSource is set)
	// TokenSource, if set, is asked for a fresh token before every login
	// and before the live session's token expires (it is then refreshed
	// on the socket, see docs/protocol.md). Without it, a session ends for
	// good when its Token expires (Err is the token_expired ServerError).
	TokenSource TokenFunc
	DeviceID    string
	Terminal    string // web, ios, android, desktop, ...
	Cursor      string // sync cursor to start from ("" = from the beginning)

	// OnEvent gets every event once per (conv_id, seq), serially: exactly
	// once while the client's bounded memory can tell (see Known).
	OnEvent func(protocol.Event)
	// OnEventVia, if set, is called instead of OnEvent and also says
	// whether the event came by push (true) or by sync (false).
	OnEventVia func(ev protocol.Event, pushed bool)
	// OnConnect runs after each welcome; OnDisconnect after each lost
	// connection (err says why).
	OnConnect    func(w protocol.ServerFrame)
	OnDisconnect func(err error)

	// Known, if set, says whether the app already has ev (in its store,
	// keyed by conv_id and seq); OnEvent then never gets an event Known
	// has. It is asked for every event the bounded memory does not
	// recognise as a repeat (memory: DedupeConversations conversations,
	// each with its last 256 seqs). Without Known, memory decides for the
	// events this Client handed on, and an event it cannot judge (of a
	// conversation it evicted, or older than the window) is handed on:
	// the app must then store events keyed by (conv_id, seq) so a repeat
	// replaces itself (docs/protocol.md, section 5). It runs serially with
	// OnEvent.
	Known func(ev protocol.Event) bool
	// DedupeConversations is how many conversations the dedupe memory
	// remembers (default 1024, about 2 KiB each).
	DedupeConversations int

	// OnResync runs after the client resynced because its cursor had
	// expired (the sync answered cursor_expired: the feed keeps events for
	// a retention window): the unread messages came through OnEvent, but
	// read, recall and delivered events of the gap, and messages already
	// read elsewhere, did not. The app should refresh its conversation
	// list (GET /v1/conversations: read and delivered cursors) and fetch
	// history where it needs it (docs/protocol.md, section 5).
	OnResync func()

	// OnSyncHint, if set, runs when the node says pushes to this session
	// may have been dropped (a sync frame, docs/protocol.md section 5);
	// the client then syncs by itself within the frame's sync_within_ms.
	OnSyncHint func(reason string)

	NoAutoAck bool // do not ack message events from others
	NoSync    bool // do not sync after login (bench: push only)

	// HTTPClient makes the sync calls to APIURL. Nil: without TLS, one
	// client shared by every such Client of the process (calls end after
	// DefaultAPITimeout); with TLS, one of this Client's own that uses it.
	HTTPClient *http.Client
	Log        *slog.Logger
}

// ErrKicked is returned by Err after the same terminal logged in elsewhere;
// a kicked client does not reconnect.
var ErrKicked = errors.New("kicked: the same terminal logged in elsewhere")

// ServerError is an error frame or a close reason from the node.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return e.Code + ": " + e.Message }

func srvErr(e protocol.Error) *ServerError { return &ServerError{Code: e.Code, Message: e.Message} }

// Client is one device: it keeps a connection to some push node, delivers
// events once each, acks them, reconnects with backoff and jitter, and syncs
// from its cursor after every login (and once more ResyncAfterMs later). See
// docs/protocol.md.
type Client struct {
	cfg  Config
	log  *slog.Logger
	http *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	start  sync.Once // runs the loop, or (Close before Start) closes done

	wmu sync.Mutex // guards writes on nc
	mu  sync.Mutex
	nc  net.Conn // the connection being dialed or used (Close closes it)
	// live is nc once its welcome came, nil before: frames from outside
	// the session's own login (sends, acks, pings, refreshes, possibly of
	// a session that just ended) never reach a connection that has not
	// logged in, where the node would answer unauthenticated and the
	// client would stop for good.
	live net.Conn

	connected chan struct{} // closed at the first welcome
	connOnce  sync.Once

	dmu    sync.Mutex // serializes OnEvent
	seen   *dedupe
	cursor string

	ackMu       sync.Mutex
	acks        map[string]int64 // conv -> highest seq to ack (at most maxPendingAcks)
	acksDropped atomic.Int64

	smu       sync.Mutex
	pending   map[string]chan sendAnswer
	reqID     atomic.Int64
	syncMu    sync.Mutex
	syncKick  chan struct{} // a sync is wanted (coalesced; see syncer)
	urlIdx    int
	Node      atomic.Value // string: node id of the current connection
	user      atomic.Value // string
	token     atomic.Value // string: the last token from TokenSource
	expiresAt atomic.Int64 // unix ms: the session token's expiry
	pushes    atomic.Int64
	synced    atomic.Int64
	dropped   atomic.Int64
	resyncs   atomic.Int64
	hints     atomic.Int64 // sync frames received
	// hintGen counts sync hints; hintDone is the highest hintGen a
	// complete sync started after (the syncer retries until it catches up).
	hintGen, hintDone atomic.Int64
	unsure            atomic.Int64 // handed on without Known while memory could not tell
	// pushedSinceSync counts the pushed events since the start of the
	// last completed sync.
	pushedSinceSync atomic.Int64
}

// syncAfterPushes: a sync is requested after this many pushed events.
const syncAfterPushes = dedupeWindow / 2

type sendAnswer struct {
	status int
	result json.RawMessage
	err    *protocol.Error
}

// New returns a Client; call Start.
func New(cfg Config) *Client {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = syncHTTPClient(cfg.TLS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg, log: cfg.Log, http: cfg.HTTPClient, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), connected: make(chan struct{}),
		seen: newDedupe(cfg.DedupeConversations), cursor: cfg.Cursor, acks: map[string]int64{},
		pending: map[string]chan sendAnswer{}, syncKick: make(chan struct{}, 1),
	}
	c.Node.Store("")
	return c
}

// syncHTTPClient is the HTTP client of a Client without its own: with the
// default TLS settings (nil), the package's shared defaultHTTP, so that
// every such Client of a process (imctl bench: thousands) pools its
// connections to the message tier together; with a custom TLS config, a
// client and transport of its own, since a transport's pool carries its
// TLS settings.
func syncHTTPClient(tc *tls.Config) *http.Client {
	if tc == nil {
		return defaultHTTP
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: DefaultAPITimeout, Transport: tr}
}

// Start connects in the background and keeps the client connected until
// Close, a kick, or a refused token. Only the first call does anything.
func (c *Client) Start() { c.start.Do(func() { go c.loop() }) }

// WaitConnected waits for the first welcome.
func (c *Client) WaitConnected(ctx context.Context) error {
	select {
	case <-c.connected:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed when the client stopped for good; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped (nil after Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Close disconnects and stops (also when Start was never called).
func (c *Client) Close() {
	c.cancel()
	c.start.Do(func() { close(c.done) })
	c.mu.Lock()
	if c.nc != nil {
		_ = c.nc.Close()
	}
	c.mu.Unlock()
	<-c.done
}

// Cursor returns the sync cursor after the last completed sync page.
func (c *Client) Cursor() string {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.cursor
}

// Stats returns how many events came by push and by sync (after dedupe),
// and how many duplicates were dropped.
func (c *Client) Stats() (pushed, synced, duplicates int64) {
	return c.pushes.Load(), c.synced.Load(), c.dropped.Load()
}

// Unsure returns how many events were handed on although the dedupe memory
// could not tell whether they were new (no Known set): possible repeats,
// which an app storing events by (conv_id, seq) absorbs.
func (c *Client) Unsure() int64 { return c.unsure.Load() }

func (c *Client) loop() {
	defer close(c.done)
	syncDone := make(chan struct{})
	go func() { defer close(syncDone); c.syncer() }()
	defer func() { c.cancel(); <-syncDone }()
	backoff := 200 * time.Millisecond
	for c.ctx.Err() == nil {
		url := c.cfg.URLs[c.urlIdx%len(c.cfg.URLs)]
		wait, err := c.session(url)
		if c.cfg.OnDisconnect != nil && c.ctx.Err() == nil {
			c.cfg.OnDisconnect(err)
		}
		var se *ServerError
		switch {
		case c.ctx.Err() != nil:
			return
		case errors.Is(err, ErrKicked):
			c.err = err
			return
		case errors.As(err, &se) && se.Code == protocol.ErrUnauthenticated:
			c.err = err
			return
		case errors.As(err, &se) && se.Code == protocol.ErrTokenExpired:
			if c.cfg.TokenSource == nil {
				c.err = err // the same token would be refused
				return
			}
			wait = expiredWait()
		}
		c.urlIdx++
		if wait < 0 { // never got a welcome: exponential backoff, full jitter
			wait = rand.N(backoff) + 50*time.Millisecond
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 200 * time.Millisecond
		}
		c.log.Debug("reconnecting", "in", wait, "err", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session runs one connection. wait is how long to wait before the next
// (negative: the login failed, back off).
func (c *Client) session(url string) (wait time.Duration, err error) {
	wait = -1
	dctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	nc, br, _, err := ws.Dialer{TLSConfig: c.cfg.TLS}.Dial(dctx, url)
	cancel()
	if err != nil {
		return wait, fmt.Errorf("while dialing %s: %w", url, err)
	}
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.nc, c.live = nil, nil
		c.mu.Unlock()
		_ = nc.Close()
		c.failPending()
	}()
	if c.ctx.Err() != nil {
		return wait, c.ctx.Err()
	}
	tok, err := c.loginToken()
	if err != nil {
		return wait, err
	}
	login, err := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: tok,
		DeviceID: c.cfg.DeviceID, Terminal: c.cfg.Terminal})
	if err != nil {
		return wait, err
	}
	if err := c.writeOn(nc, login); err != nil {
		return wait, err
	}
	_ = nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	f, err := readFrame(r)
	if err != nil {
		return wait, err
	}
	if f.Type != protocol.FrameWelcome {
		return wait, frameErr(f)
	}
	c.mu.Lock()
	c.live = nc
	c.mu.Unlock()
	c.Node.Store(f.NodeID)
	c.user.Store(f.UserID)
	c.expiresAt.Store(f.ExpiresAtMs)
	hb := time.Duration(f.HeartbeatMs) * time.Millisecond
	if hb <= 0 {
		hb = 30 * time.Second
	}
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(*f)
	}
	c.connOnce.Do(func() { close(c.connected) })
	wait = 0

	// Heartbeats, ack flushes and the post-login syncs run beside the reader.
	stop := make(chan struct{})
	defer close(stop)
	expCh := make(chan int64, 1)
	c.refreshed(f.ExpiresAtMs, expCh)
	go c.background(stop, expCh, hb, time.Duration(f.ResyncAfterMs)*time.Millisecond)

	for {
		_ = nc.SetReadDeadline(time.Now().Add(hb * 5 / 2))
		f, err := readFrame(r)
		if err != nil {
			return wait, err
		}
		switch f.Type {
		case protocol.FrameEvent:
			if f.Event != nil {
				c.deliver(*f.Event, true)
			}
		case protocol.FramePong:
		case protocol.FrameRefreshed:
			c.refreshed(f.ExpiresAtMs, expCh)
		case protocol.FrameSendResult:
			c.smu.Lock()
			ch := c.pending[f.ID]
			delete(c.pending, f.ID)
			c.smu.Unlock()
			if ch != nil {
				ch <- sendAnswer{status: f.Status, result: f.Result, err: f.Error}
			}
		case protocol.FrameSync:
			c.syncHint(f)
		case protocol.FrameKick:
			return wait, ErrKicked
		case protocol.FrameDrain:
			return time.Duration(f.ReconnectInMs) * time.Millisecond, frameErr(f)
		default:
			return wait, frameErr(f)
		}
	}
}

// background runs a session's heartbeats, ack flushes, token refreshes and
// post-login syncs. Nothing in it may block: a sync runs on the syncer, a
// refresh on its own goroutine, so a slow API never holds back a ping.
func (c *Client) background(stop <-chan struct{}, expCh <-chan int64, hb, resync time.Duration) {
	c.requestSync()
	ping := time.NewTicker(hb)
	defer ping.Stop()
	flush := time.NewTicker(100 * time.Millisecond)
	defer flush.Stop()
	var resyncC <-chan time.Time
	if resync > 0 && !c.cfg.NoSync {
		t := time.NewTimer(resync)
		defer t.Stop()
		resyncC = t.C
	}
	refresh := time.NewTimer(time.Hour)
	refresh.Stop()
	defer refresh.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ping.C:
			_ = c.write(protocol.ClientFrame{Type: protocol.FramePing})
		case <-flush.C:
			c.flushAcks()
		case <-resyncC:
			c.requestSync()
		case ms := <-expCh:
			if d := c.refreshDelay(ms); d >= 0 {
				refresh.Reset(d)
			}
		case <-refresh.C:
			// Retry later unless a refreshed frame reschedules first.
			refresh.Reset(max(minRefreshDelay, time.Until(c.ExpiresAt())/2))
			go c.refreshToken()
		}
	}
}

// syncHint handles a sync frame: pushes to this session may have been
// dropped, so the client syncs from its cursor at a random moment within
// the frame's sync_within_ms (a node tells all its devices at once; the
// spread keeps them from syncing at once). Requests coalesce with any
// sync under way: one more sync runs after it, so the sync that follows
// the hint reads after the hint was sent.
func (c *Client) syncHint(f *protocol.ServerFrame) {
	c.hints.Add(1)
	c.hintGen.Add(1)
	if c.cfg.OnSyncHint != nil {
		c.cfg.OnSyncHint(f.Reason)
	}
	if f.SyncWithinMs <= 0 {
		c.requestSync()
		return
	}
	time.AfterFunc(rand.N(time.Duration(f.SyncWithinMs)*time.Millisecond), c.requestSync)
}

// SyncHints returns how many sync frames the node sent this client.
func (c *Client) SyncHints() int64 { return c.hints.Load() }

func frameErr(f *protocol.ServerFrame) error {
	if f.Error != nil {
		return srvErr(*f.Error)
	}
	return fmt.Errorf("unexpected %q frame", f.Type)
}

// readFrame reads the next data frame; a close frame becomes an error
// carrying its reason code.
func readFrame(r io.Reader) (*protocol.ServerFrame, error) {
	for {
		h, err := ws.ReadHeader(r)
		if err != nil {
			return nil, err
		}
		if h.Length > 16<<20 {
			return nil, fmt.Errorf("server frame of %d bytes", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, &ServerError{Code: reason, Message: "closed with status " + strconv.Itoa(int(code))}
		case ws.OpText:
			var f protocol.ServerFrame
			if err := json.Unmarshal(p, &f); err != nil {
				return nil, fmt.Errorf("bad server frame: %w", err)
			}
			if f.Type == protocol.FrameError && f.Error != nil {
				// The close frame follows; report the richer error frame.
				return nil, srvErr(*f.Error)
			}
			return &f, nil
		}
	}
}

func (c *Client) write(f protocol.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.WriteRaw(b)
}

// WriteRaw writes one text frame as is (tests use it for bad frames) on
// the logged-in connection; before the welcome it is not connected.
func (c *Client) WriteRaw(p []byte) error {
	c.mu.Lock()
	nc := c.live
	c.mu.Unlock()
	if nc == nil {
		return errors.New("not connected")
	}
	return c.writeOn(nc, p)
}

// writeOn writes one text frame on nc.
func (c *Client) writeOn(nc net.Conn, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	w := bufio.NewWriterSize(nc, 512)
	if err := wsutil.WriteClientText(w, p); err != nil {
		return err
	}
	return w.Flush()
}
