//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/protocol"
)

// feedRetention is the message tier's IM_FEED_RETENTION in
// TestResyncAfterCursorExpired: a cursor expires when its horizon is older
// than this minus the 1 s margin, so 3 s after the device's last sync.
const feedRetention = "4s"

// TestResyncAfterCursorExpired proves the device client's recovery from
// 410 cursor_expired (docs/protocol.md, section 5) on the real stack: a
// device receives messages, loses its connection while more arrive (some
// in a new conversation) and stays away until the feed retention has
// expired its cursor; on reconnecting it resyncs (unread pull, then sync
// from the pull's sync_cursor) and ends with every message exactly once,
// then still gets live messages. The same Client instance stays up
// throughout, so the repeats of the unread pull meet its real dedupe.
func TestResyncAfterCursorExpired(t *testing.T) {
	c := newCluster(t, config.EnvFeedRetention+"="+feedRetention)
	node := c.startPush("push-a")
	px := newCutProxy(t, strings.TrimSuffix(strings.TrimPrefix(node.wsURL, "ws://"), "/"))

	var resyncs atomic.Int64
	sw := &syncWatch{rt: http.DefaultTransport}
	bob := c.connectWith(func(cfg *client.Config) {
		cfg.OnResync = func() { resyncs.Add(1) }
		on := cfg.OnConnect
		cfg.OnConnect = func(w protocol.ServerFrame) { sw.welcome(w); on(w) }
		cfg.HTTPClient = &http.Client{Timeout: client.DefaultAPITimeout, Transport: sw}
	}, "bob", "bob-phone", "ios", px.url())
	eventually(t, "bob's session in presence", 10*time.Second, func() bool { return c.sessions("bob") == 1 })

	want := map[string]protocol.SendResponse{} // msg id -> its send answer
	send := func(from, to, text string) string {
		r := c.send(from, from+"-phone", to, text)
		if r.Seq == nil {
			t.Fatalf("send %q answered without a seq", text)
		}
		want[r.MsgID] = r
		return r.MsgID
	}

	// 1. Connected: bob gets some messages.
	var before []string
	for i := range 4 {
		before = append(before, send("alice", "bob", fmt.Sprint("before-", i)))
	}
	bob.await(t, "the messages sent while bob is connected", 15*time.Second, func() bool { return hasMsgs(bob.events, before) })
	checkExactlyOnce(t, bob, want)

	// 2. Bob's connection is cut (his device keeps its cursor and its
	// memory); more messages arrive meanwhile, some in a new conversation,
	// and his cursor outlives the feed retention. Not before the session's
	// last sync (the resync ResyncAfterMs after the welcome) is done: one
	// still under way at the cut would renew his cursor after it is taken.
	sw.awaitResynced(t, bob, 15*time.Second)
	bob.mu.Lock()
	discs := len(bob.disc)
	bob.mu.Unlock()
	resyncsBefore := resyncs.Load()
	px.cut()
	bob.await(t, "bob to notice the lost connection", 10*time.Second, func() bool { return len(bob.disc) > discs })
	eventually(t, "bob's session gone from presence", 10*time.Second, func() bool { return c.sessions("bob") == 0 })
	cursor := bob.Cursor()
	var away []string
	for i := range 3 {
		away = append(away, send("alice", "bob", fmt.Sprint("away-", i)))
		away = append(away, send("carol", "bob", fmt.Sprint("away-new-conv-", i)))
	}
	awaitCursorExpired(t, c, "bob", cursor, 15*time.Second)
	if cur := bob.Cursor(); cur != cursor {
		t.Fatalf("bob's cursor moved while he was away: %q, was %q", cur, cursor)
	}
	bob.mu.Lock()
	for _, id := range away {
		if hasMsgs(bob.events, []string{id}) {
			bob.mu.Unlock()
			t.Fatalf("bob got %s while his connection was cut", id)
		}
	}
	bob.mu.Unlock()

	// 3. He reconnects with the expired cursor: cursor_expired, resync,
	// and every message of steps 1 and 2 exactly once.
	px.restore()
	all := append(append([]string(nil), before...), away...)
	bob.await(t, "the resync to bring every message", 30*time.Second, func() bool {
		return resyncs.Load() > resyncsBefore && hasMsgs(bob.events, all)
	})
	if n := bob.Resyncs(); n <= resyncsBefore {
		t.Fatalf("Resyncs() = %d after the reconnect, want more than %d", n, resyncsBefore)
	}
	// Sync from the new cursor repeats no message: the resync covered them.
	// (Receipts may follow — bob's own acks of what he got produce delivered
	// events after the pull — so the page need not be empty.)
	sync, err := fetchSync(c, "bob", bob.Cursor())
	if err != nil {
		t.Fatalf("sync from bob's cursor after the resync: %v", err)
	}
	for _, ev := range sync.Events {
		if ev.Kind == protocol.KindMessage {
			t.Fatalf("sync from bob's cursor after the resync repeats message %s at seq %d", ev.ConvID, ev.Seq)
		}
		t.Logf("after the resync: %s event in %s at seq %d", ev.Kind, ev.ConvID, ev.Seq)
	}
	checkExactlyOnce(t, bob, want)

	// Then a live message still arrives, exactly once.
	eventually(t, "bob's session back in presence", 10*time.Second, func() bool { return c.sessions("bob") == 1 })
	live := send("carol", "bob", "live")
	bob.await(t, "the live message after the resync", 15*time.Second, func() bool { return hasMsgs(bob.events, []string{live}) })
	checkExactlyOnce(t, bob, want)
	pushed, synced, dups := bob.Stats()
	t.Logf("resyncs %d (%d before the cut), events pushed %d, synced %d, repeats dropped %d",
		resyncs.Load(), resyncsBefore, pushed, synced, dups)
}

// hasMsgs reports whether evs hold a message of each id.
func hasMsgs(evs []protocol.Event, ids []string) bool {
	got := map[string]bool{}
	for _, e := range evs {
		if e.Kind == protocol.KindMessage && e.Message != nil {
			got[e.Message.MsgID] = true
		}
	}
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

// checkExactlyOnce fails t unless d got every message of want exactly once,
// with the (conv_id, seq) its send answered, no other message, and no
// (conv_id, seq) twice.
func checkExactlyOnce(t *testing.T, d *device, want map[string]protocol.SendResponse) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	type key struct {
		conv string
		seq  int64
	}
	byKey := map[key]int{}
	byID := map[string]int{}
	for _, e := range d.events {
		byKey[key{e.ConvID, e.Seq}]++
		if e.Kind != protocol.KindMessage || e.Message == nil {
			continue
		}
		byID[e.Message.MsgID]++
		w, ok := want[e.Message.MsgID]
		switch {
		case !ok:
			t.Errorf("unexpected message %s (%s#%d)", e.Message.MsgID, e.ConvID, e.Seq)
		case e.ConvID != w.ConvID || e.Seq != *w.Seq:
			t.Errorf("message %s came as %s#%d, sent as %s#%d", e.Message.MsgID, e.ConvID, e.Seq, w.ConvID, *w.Seq)
		}
	}
	for k, n := range byKey {
		if n != 1 {
			t.Errorf("event %s#%d handed on %d times", k.conv, k.seq, n)
		}
	}
	for id := range want {
		if n := byID[id]; n != 1 {
			t.Errorf("message %s handed on %d times, want once", id, n)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func fetchSync(c *cluster, user, cursor string) (client.SyncPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p client.SyncPage
	err := c.api(user, "").Get(ctx, client.SyncPath+"?cursor="+url.QueryEscape(cursor), &p)
	return p, err
}

// awaitCursorExpired polls a sync from cursor (which changes nothing on the
// server) until it answers 410 cursor_expired.
func awaitCursorExpired(t *testing.T, c *cluster, user, cursor string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, err := fetchSync(c, user, cursor)
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == 410 && ae.Code == protocol.ErrCursorExpired {
			return
		}
		if err != nil && !errors.As(err, &ae) {
			t.Fatalf("sync from the device's cursor: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device's cursor did not expire within %v (feed retention %s); last answer: %v", timeout, feedRetention, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cutProxy forwards TCP connections to a push node until cut: then it
// closes them all and refuses new ones (accepts and closes them) until
// restore, so a device is away while the node and its address stay up.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "ws://" + p.ln.Addr().String() + "/" }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track registers a forwarded pair, unless the proxy was cut meanwhile.
func (p *cutProxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		_ = in.Close()
		_ = out.Close()
		return false
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	return true
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut closes every forwarded connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for nc := range p.conns {
		_ = nc.Close()
	}
}

// restore forwards new connections again.
func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// syncWatch is a device's HTTP transport that notes its sync calls, to tell
// when the session's post-login resync (the last sync a session makes
// unless pushes pile up) is complete.
type syncWatch struct {
	rt http.RoundTripper

	mu       sync.Mutex
	resyncAt time.Time // welcome + resync_after_ms of the last session
	last     string    // cursor of the last sync call
	lastAt   time.Time
}

func (w *syncWatch) welcome(f protocol.ServerFrame) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resyncAt = time.Now().Add(time.Duration(f.ResyncAfterMs) * time.Millisecond)
}

func (w *syncWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == client.SyncPath {
		w.mu.Lock()
		w.last, w.lastAt = r.URL.Query().Get("cursor"), time.Now()
		w.mu.Unlock()
	}
	return w.rt.RoundTrip(r)
}

// awaitResynced waits until a sync call began after the resync was due and
// d's cursor moved past the one it sent (every complete sync renews the
// cursor's horizon).
func (w *syncWatch) awaitResynced(t *testing.T, d *device, timeout time.Duration) {
	t.Helper()
	eventually(t, "the post-login resync to complete", timeout, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.resyncAt.IsZero() && !w.lastAt.Before(w.resyncAt) && d.Cursor() != w.last
	})
}
