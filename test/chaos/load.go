package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// msg is one logical message of the load: one client_msg_id, sent until
// acknowledged (attempt 1, 2, …) or until the load gives up.
type msg struct {
	cmid     string
	from, to int // to: the peer of a 1:1 message
	group    int // the index of the group in load.groups; -1 for a 1:1 message
	device   string
	text     string
	start    time.Time // first attempt

	mu       sync.Mutex
	attempts int
	acked    bool
	ackAt    time.Time
	msgID    string
	ackSeq   int64 // the first attempt's answered seq (its place in the log); -1 unknown
	idErrors []string
}

// device is one logged-in device of a user: a pkg/client Client and what
// it holds (every event by (conv_id, seq), from push or sync).
type device struct {
	user     int
	id       string
	terminal string
	c        *client.Client

	mu         sync.Mutex
	have       map[string]map[int64]protocol.Event
	msgSeq     map[string]int64 // client_msg_id -> seq of the message events it holds
	lastPushed map[string]int64
	pushOrder  int // fresh pushes below a seq already pushed in the conversation (1:1)
	pushOrderG int // the same in group conversations
	echoed     int // messages pushed back to the device that sent them
	receiptsG  int // delivered receipts in group conversations (groups have none)
	seqSplit   int // one client_msg_id at two seqs
	rejected   int
	syncEvents atomic.Int64 // events in the sync and unread pages this device read
}

func (d *device) known(ev protocol.Event) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.have[ev.ConvID][ev.Seq]
	return ok
}

func (d *device) onEvent(l *load, ev protocol.Event, pushed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.have[ev.ConvID]
	if m == nil {
		m = map[int64]protocol.Event{}
		d.have[ev.ConvID] = m
	}
	if _, dup := m[ev.Seq]; dup {
		return // Known said no: cannot happen
	}
	if pushed && l.sabotage > 0 && ev.Kind == protocol.KindMessage && l.sabotageN.Add(1)%l.sabotage == 0 {
		return // -sabotage: this device "loses" the push (the client counts it as held)
	}
	m[ev.Seq] = ev
	if ev.Kind == protocol.KindDelivered && isGroupConv(ev.ConvID) {
		d.receiptsG++
	}
	if pushed {
		if last, ok := d.lastPushed[ev.ConvID]; ok && ev.Seq < last {
			if isGroupConv(ev.ConvID) {
				d.pushOrderG++
			} else {
				d.pushOrder++
			}
		} else {
			d.lastPushed[ev.ConvID] = ev.Seq
		}
		l.tl.mark(&l.tl.pushes)
	}
	switch ev.Kind {
	case protocol.KindRejected:
		d.rejected++
	case protocol.KindMessage:
		if ev.Message == nil {
			return
		}
		if pushed {
			if sm, ok := l.byCmid.Load(ev.Message.ClientMsgID); ok && sm.(*msg).from == d.user && sm.(*msg).device == d.id {
				d.echoed++
			}
		}
		if s, ok := d.msgSeq[ev.Message.ClientMsgID]; ok && s != ev.Seq {
			d.seqSplit++
		} else {
			d.msgSeq[ev.Message.ClientMsgID] = ev.Seq
		}
	}
}

// countingTransport counts the events of the sync and unread pages a
// device reads, so redelivered pushes can be told from sync repeats.
type countingTransport struct {
	base http.RoundTripper
	d    *device
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK ||
		!(strings.HasPrefix(r.URL.Path, client.SyncPath) || strings.HasPrefix(r.URL.Path, client.UnreadPath)) {
		return resp, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var p struct {
		Events []json.RawMessage `json:"events"`
	}
	if json.Unmarshal(b, &p) == nil {
		t.d.syncEvents.Add(int64(len(p.Events)))
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// timeline counts events per 100 ms since t0.
type timeline struct {
	t0                          time.Time
	acks, fails, pushes, starts [6000]atomic.Int32 // 10 minutes
}

func (t *timeline) mark(a *[6000]atomic.Int32) {
	i := int(time.Since(t.t0) / (100 * time.Millisecond))
	if i >= 0 && i < len(a) {
		a[i].Add(1)
	}
}

func (t *timeline) at(i int) time.Time { return t.t0.Add(time.Duration(i) * 100 * time.Millisecond) }

// load is one scenario's users, devices and messages.
type load struct {
	runID   string
	api     string
	push    []string
	users   []string
	tokens  []string
	online  []bool
	devices []*device
	byUser  map[int][]*device
	groups  []*group
	// groupShare of the sends go to a random group (by a random online
	// member); the rest are 1:1.
	groupShare float64
	sendHC     *http.Client
	tl         *timeline

	mu       sync.Mutex
	msgs     []*msg
	byCmid   sync.Map // client_msg_id -> *msg
	inflight atomic.Int64
	skipped  atomic.Int64 // ticks skipped: too many messages awaiting an answer
	refused  []refusal    // failed attempts (time, error)
	dupSent  atomic.Int64 // resends of an acknowledged message (a lost answer)
	// sabotage > 0 drops every sabotage-th pushed message in the device
	// store (-sabotage): proof that the checks catch a loss.
	sabotage  int64
	sabotageN atomic.Int64
	wg        sync.WaitGroup
}

type refusal struct {
	at  time.Time
	err string
}

const maxInflight = 1500

// maxSendConns bounds the load's connections to the message tier (more
// sends in flight wait for one): every connection costs this process three
// descriptors with the balancer's two ends, and during a Kafka outage
// 1,500 messages retrying every second or two churned through its 20,000.
const maxSendConns = 512

func newLoad(runID, api string, push []string, nUsers int, offline float64, key []byte) (*load, error) {
	signer, err := auth.NewSigner(auth.KindUser, key)
	if err != nil {
		return nil, err
	}
	l := &load{runID: runID, api: api, push: push, byUser: map[int][]*device{}, tl: &timeline{t0: time.Now()},
		sendHC: &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, MaxConnsPerHost: maxSendConns,
			IdleConnTimeout: 30 * time.Second}}}
	nOff := int(float64(nUsers) * offline)
	for i := 0; i < nUsers; i++ {
		u := fmt.Sprintf("%s-u%d", runID, i)
		tok, err := signer.Sign(u, 2*time.Hour)
		if err != nil {
			return nil, err
		}
		l.users, l.tokens = append(l.users, u), append(l.tokens, tok)
		l.online = append(l.online, i >= nOff) // the first nOff users stay offline until the check
	}
	return l, nil
}

// connect logs in both devices of the given users (with sync, acks and
// reconnects: pkg/client as an app uses it) and waits for their welcome.
func (l *load) connect(ctx context.Context, users []int) error {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	var devs []*device
	for _, u := range users {
		for k, term := range []string{"ios", "web"} {
			d := &device{user: u, id: fmt.Sprintf("d%d", k), terminal: term, have: map[string]map[int64]protocol.Event{},
				msgSeq: map[string]int64{}, lastPushed: map[string]int64{}}
			urls := []string{l.push[(u+k)%len(l.push)], l.push[(u+k+1)%len(l.push)]}
			d.c = client.New(client.Config{URLs: urls, APIURL: "http://" + l.api, Token: l.tokens[u], DeviceID: d.id, Terminal: term,
				HTTPClient: &http.Client{Timeout: 15 * time.Second, Transport: countingTransport{base: tr, d: d}},
				Known:      d.known, OnEventVia: func(ev protocol.Event, pushed bool) { d.onEvent(l, ev, pushed) }})
			devs = append(devs, d)
		}
	}
	l.mu.Lock()
	l.devices = append(l.devices, devs...)
	for _, d := range devs {
		l.byUser[d.user] = append(l.byUser[d.user], d)
	}
	l.mu.Unlock()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.c.Start()
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if d.c.WaitConnected(cctx) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d devices did not connect in 60 s", n, len(devs))
	}
	return nil
}

func (l *load) closeAll() {
	var wg sync.WaitGroup
	for _, d := range l.devices {
		wg.Add(1)
		go func() { defer wg.Done(); d.c.Close() }()
	}
	wg.Wait()
}

// run sends rate messages per second until stop is closed: a random online
// user (one of its two devices) to a random other user, online or not, or
// (groupShare of them) a random online member of a random group to it.
// Each message is sent until acknowledged, with numbered attempts, until
// giveUp; a few acknowledged ones are sent once more (an answer the client
// lost), which must answer the same msg_id.
func (l *load) run(rate float64, stop <-chan struct{}, giveUp *atomic.Int64) {
	var senders []int
	for i, on := range l.online {
		if on {
			senders = append(senders, i)
		}
	}
	start := time.Now()
	for k := 0; ; k++ {
		next := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		if l.inflight.Load() >= maxInflight {
			l.skipped.Add(1)
			continue
		}
		m := &msg{cmid: fmt.Sprintf("%s-m%d", l.runID, k), group: -1, device: fmt.Sprintf("d%d", rand.IntN(2)),
			start: time.Now(), ackSeq: -1}
		if len(l.groups) > 0 && rand.Float64() < l.groupShare {
			m.group = rand.IntN(len(l.groups))
			g := l.groups[m.group]
			m.from, m.to = g.senders[rand.IntN(len(g.senders))], -1
		} else {
			m.from = senders[rand.IntN(len(senders))]
			m.to = rand.IntN(len(l.users) - 1)
			if m.to >= m.from {
				m.to++
			}
		}
		m.text = "chaos " + m.cmid
		l.byCmid.Store(m.cmid, m)
		l.mu.Lock()
		l.msgs = append(l.msgs, m)
		l.mu.Unlock()
		l.inflight.Add(1)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.inflight.Add(-1)
			l.deliverMsg(m, giveUp)
		}()
	}
}

func (l *load) sendOnce(m *msg, attempt int) (protocol.SendResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 16*time.Second)
	defer cancel()
	api := client.API{BaseURL: "http://" + l.api, Token: l.tokens[m.from], Device: m.device, HTTP: l.sendHC}
	l.tl.mark(&l.tl.starts)
	t0 := time.Now()
	req := client.SendRequest{ClientMsgID: m.cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: m.text}, Attempt: attempt}
	if m.group >= 0 {
		req.GroupID = l.groups[m.group].id
	} else {
		req.To = l.users[m.to]
	}
	res, err := api.Send(ctx, req)
	if err != nil {
		l.tl.mark(&l.tl.fails)
		l.mu.Lock()
		l.refused = append(l.refused, refusal{at: t0, err: shortErr(err)})
		l.mu.Unlock()
		return res, err
	}
	l.tl.mark(&l.tl.acks)
	return res, nil
}

func shortErr(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s", ae.Status, ae.Code)
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "deadline exceeded") || strings.Contains(s, "Timeout"):
		return "timeout"
	case strings.Contains(s, "EOF") || strings.Contains(s, "reset"):
		return "connection lost"
	case strings.Contains(s, "too many open files"):
		return "EMFILE in the load generator"
	case strings.Contains(s, "refused"):
		return "connection refused"
	}
	return s
}

func (l *load) deliverMsg(m *msg, giveUp *atomic.Int64) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		m.attempts = attempt
		m.mu.Unlock()
		res, err := l.sendOnce(m, attempt)
		if err == nil {
			m.mu.Lock()
			m.acked, m.ackAt, m.msgID = true, time.Now(), res.MsgID
			if attempt == 1 && res.Seq != nil {
				m.ackSeq = *res.Seq
			}
			m.mu.Unlock()
			break
		}
		if g := giveUp.Load(); g != 0 && time.Now().UnixNano() > g {
			return
		}
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(2*backoff, 2*time.Second)
	}
	// An answer the client lost: about 3 % of the acknowledged messages
	// are sent once more (a retry), which must answer the same msg_id.
	if rand.IntN(100) < 3 {
		time.Sleep(rand.N(2 * time.Second))
		m.mu.Lock()
		m.attempts++
		attempt := m.attempts
		m.mu.Unlock()
		l.dupSent.Add(1)
		res, err := l.sendOnce(m, attempt)
		if err == nil && res.MsgID != m.msgID {
			m.mu.Lock()
			m.idErrors = append(m.idErrors, fmt.Sprintf("retry answered msg_id %s, first %s", res.MsgID, m.msgID))
			m.mu.Unlock()
		}
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			m.mu.Lock()
			m.idErrors = append(m.idErrors, "a retry of the same content answered 409 "+ae.Code)
			m.mu.Unlock()
		}
	}
}

func isGroupConv(conv string) bool { return strings.HasPrefix(conv, "g:") }
