package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/protocol"
)

// tally counts the acknowledged messages of one kind (1:1 or group) and
// what the checks found wrong with them.
type tally struct {
	Acked, Lost, StoredTwice, Reordered int
	// Reordered is the sum of these:
	PushOrder, SeqMismatch, Causal, SyncOrder, HistoryOrder int
}

func (t *tally) sumReordered() {
	t.Reordered = t.SeqMismatch + t.Causal + t.SyncOrder + t.PushOrder + t.HistoryOrder
}

// verdict is what the checks of one scenario found.
type verdict struct {
	Direct, Group          tally // 1:1 messages; group messages
	Unacked, UnackedStored int
	Unhealed               int // (device, message) pairs a connected device lacked before the final sync
	RedeliveredPushes      int64
	IDErrors, Rejected     int
	Echoed                 int           // messages pushed back to the device that sent them
	LateInViews            int           // acknowledged messages an API view held only after its first read
	LateBy                 time.Duration // the last of those appeared this long after the first read
	GroupReceipts          int           // delivered receipts in group conversations (there are none in groups)
	CheckErrors            []string
	Examples               []string
}

// of is the tally of m's kind.
func (v *verdict) of(m *msg) *tally {
	if m.group >= 0 {
		return &v.Group
	}
	return &v.Direct
}

// ofConv is the tally of a conversation's kind.
func (v *verdict) ofConv(conv string) *tally {
	if isGroupConv(conv) {
		return &v.Group
	}
	return &v.Direct
}

func (v *verdict) example(format string, a ...any) {
	if len(v.Examples) < 12 {
		v.Examples = append(v.Examples, fmt.Sprintf(format, a...))
	}
}

// userView is what the message API returns for one user: every event of a
// full sync from the empty cursor, and every page of the unread pull.
type userView struct {
	sync, unread []protocol.Event
	err          error
}

func fetchAll(ctx context.Context, hc *http.Client, api, token, path string) ([]protocol.Event, error) {
	var out []protocol.Event
	cursor := ""
	for page := 0; page < 10000; page++ {
		var p struct {
			Events     []protocol.Event `json:"events"`
			NextCursor string           `json:"next_cursor"`
			HasMore    bool             `json:"has_more"`
		}
		var err error
		for try := 0; try < 5; try++ {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			a := client.API{BaseURL: "http://" + api, Token: token, HTTP: hc}
			err = a.Get(cctx, path+"?cursor="+url.QueryEscape(cursor), &p)
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
		}
		if err != nil {
			return out, fmt.Errorf("while reading %s: %w", path, err)
		}
		out = append(out, p.Events...)
		if !p.HasMore || p.NextCursor == "" {
			return out, nil
		}
		cursor = p.NextCursor
	}
	return out, fmt.Errorf("%s: more than 10000 pages", path)
}

// missingOn counts the acknowledged messages a device lacks. own: whether
// the sending device's own messages count (it gets them by sync only).
func (l *load) missingOn(d *device, acked map[int][]*msg, own bool) []*msg {
	var miss []*msg
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range acked[d.user] {
		if !own && m.from == d.user && m.device == d.id {
			continue
		}
		if _, ok := d.msgSeq[m.cmid]; !ok {
			miss = append(miss, m)
		}
	}
	return miss
}

// ackedByUser maps each user to the acknowledged messages it takes part in.
func (l *load) ackedByUser() (map[int][]*msg, []*msg, []*msg) {
	l.mu.Lock()
	msgs := append([]*msg(nil), l.msgs...)
	l.mu.Unlock()
	by := map[int][]*msg{}
	var acked, unacked []*msg
	for _, m := range msgs {
		m.mu.Lock()
		ok := m.acked
		m.mu.Unlock()
		if !ok {
			unacked = append(unacked, m)
			continue
		}
		acked = append(acked, m)
		for _, u := range l.participants(m) {
			by[u] = append(by[u], m)
		}
	}
	return by, acked, unacked
}

// awaitHealed waits until every device holds every acknowledged message of
// its user by push or by the syncs the client runs on its own (after
// login, on sync hints, after 128 pushes) — the sending device's own
// messages excepted — and returns how many (device, message) pairs are
// still missing when that count has not fallen for stall (the pipeline
// works off a backlog after an outage: deliveries flow meanwhile), or at
// the latest after timeout.
func (l *load) awaitHealed(stall, timeout time.Duration) int {
	by, _, _ := l.ackedByUser()
	deadline := time.Now().Add(timeout)
	best, bestAt := -1, time.Now()
	for {
		n := 0
		for _, d := range l.devices {
			n += len(l.missingOn(d, by, false))
		}
		if best < 0 || n < best {
			best, bestAt = n, time.Now()
		}
		if n == 0 || time.Now().After(deadline) || time.Since(bestAt) > stall {
			if n > 0 {
				l.logUnhealed(by)
			}
			return n
		}
		time.Sleep(time.Second)
	}
}

// logUnhealed says which (device, message) pairs are missing before the
// final sync: how many of 1:1 and of group messages, on how many devices,
// and a few of them.
func (l *load) logUnhealed(by map[int][]*msg) {
	var direct, grp, devs int
	var eg []string
	for _, d := range l.devices {
		miss := l.missingOn(d, by, false)
		if len(miss) > 0 {
			devs++
		}
		for _, m := range miss {
			if m.group >= 0 {
				grp++
			} else {
				direct++
			}
			if len(eg) < 6 {
				to := fmt.Sprint(m.to)
				if m.group >= 0 {
					to = "group " + strconv.Itoa(m.group)
				}
				eg = append(eg, fmt.Sprintf("device %d/%s lacks %s (%d/%s→%s, acked %s)", d.user, d.id, m.cmid, m.from, m.device, to,
					m.ackAt.Format("15:04:05.000")))
			}
		}
	}
	logf("unhealed before the final sync: %d 1:1 and %d group (device, message) pairs on %d devices; e.g. %s",
		direct, grp, devs, strings.Join(eg, "; "))
}

// verify checks every device by sync (each syncs from its cursor now),
// every user by a full sync and an unread pull through the message API,
// and every group by its history.
func (l *load) verify(ctx context.Context, v *verdict) {
	_, acked, unacked := l.ackedByUser()
	v.Unacked = len(unacked)
	for _, m := range acked {
		v.of(m).Acked++
	}

	// The message API's view of every user and group, first. Views may
	// lag the pushes a little (the pipeline writes the feed and
	// conversation rows after it routes a message): a view that lacks an
	// acknowledged message is read again, every 2 s, until it holds it or
	// lateWait has passed since the first read; only then is it lost.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	av := &apiViews{users: make([]userView, len(l.users)), groups: make([]groupView, len(l.groups))}
	allUsers, allGroups := map[int]bool{}, map[int]bool{}
	for u := range l.users {
		allUsers[u] = true
	}
	for g := range l.groups {
		allGroups[g] = true
	}
	l.readViews(ctx, hc, allUsers, allGroups, av)
	firstRead := time.Now()
	ix := l.indexViews(av)
	gaps := l.viewGapsOf(acked, ix)
	late := len(gaps)
	var lateBy time.Duration
	for len(gaps) > 0 && time.Since(firstRead) < lateWait && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		users, groups := map[int]bool{}, map[int]bool{}
		for _, gs := range gaps {
			for _, g := range gs {
				if g.user >= 0 {
					users[g.user] = true
				} else {
					groups[g.group] = true
				}
			}
		}
		l.readViews(ctx, hc, users, groups, av)
		ix = l.indexViews(av)
		n := l.viewGapsOf(acked, ix)
		if len(n) < len(gaps) {
			lateBy = time.Since(firstRead)
		}
		gaps = n
	}
	v.LateInViews, v.LateBy = late-len(gaps), lateBy
	if late > 0 {
		logf("%d acknowledged messages were missing from some API view at its first read; %d of them appeared within %.1f s, %d not in %v",
			late, late-len(gaps), lateBy.Seconds(), len(gaps), lateWait)
	}
	// Then every device syncs from its cursor: what the API showed
	// stored before this sync began and the device lacks after it is
	// lost. Bounded: a device whose sync has not completed in time is checked
	// as it is (and reported).
	var synced atomic.Int64
	all := make(chan struct{})
	go func() {
		for _, d := range l.devices {
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); d.c.SyncNow(); synced.Add(1) }()
		}
		wg.Wait()
		close(all)
	}()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		v.CheckErrors = append(v.CheckErrors, fmt.Sprintf("only %d of %d devices completed their final sync in 2 min", synced.Load(), len(l.devices)))
	}

	views, gviews := av.users, av.groups
	for u, uv := range views {
		if uv.err != nil {
			v.CheckErrors = append(v.CheckErrors, fmt.Sprintf("user %d: %v", u, uv.err))
		}
	}
	for i, gv := range gviews {
		if gv.err != nil {
			v.CheckErrors = append(v.CheckErrors, fmt.Sprintf("group %d: %v", i, gv.err))
		}
	}

	// seqs[cmid] collects every seq any view gave the message.
	seqs := map[string]map[int64]bool{}
	note := func(cmid string, seq int64) {
		s := seqs[cmid]
		if s == nil {
			s = map[int64]bool{}
			seqs[cmid] = s
		}
		s[seq] = true
	}
	ours := map[string]*msg{}
	l.mu.Lock()
	for _, m := range l.msgs {
		ours[m.cmid] = m
	}
	l.mu.Unlock()
	twice := map[string]bool{}
	for u, uv := range views {
		last := map[string]int64{}
		perView := map[string]int64{}
		for _, ev := range uv.sync {
			if l, ok := last[ev.ConvID]; ok && ev.Seq <= l {
				v.ofConv(ev.ConvID).SyncOrder++
				v.example("user %d: sync gave %s seq %d after seq %d", u, ev.ConvID, ev.Seq, l)
			}
			last[ev.ConvID] = ev.Seq
			if ev.Kind == protocol.KindRejected {
				v.Rejected++
			}
			if ev.Kind == protocol.KindDelivered && isGroupConv(ev.ConvID) {
				v.GroupReceipts++
			}
			if ev.Kind != protocol.KindMessage || ev.Message == nil || ours[ev.Message.ClientMsgID] == nil {
				continue
			}
			cm := ev.Message.ClientMsgID
			if s, ok := perView[cm]; ok && s != ev.Seq {
				twice[cm] = true
				v.example("user %d: sync holds %s at seqs %d and %d", u, cm, s, ev.Seq)
			}
			perView[cm] = ev.Seq
			note(cm, ev.Seq)
		}
		perView = map[string]int64{}
		for _, ev := range uv.unread {
			if ev.Kind != protocol.KindMessage || ev.Message == nil || ours[ev.Message.ClientMsgID] == nil {
				continue
			}
			cm := ev.Message.ClientMsgID
			if _, ok := perView[cm]; ok {
				twice[cm] = true
				v.example("user %d: unread pull holds %s twice", u, cm)
			}
			perView[cm] = ev.Seq
			note(cm, ev.Seq)
		}
	}
	for i, gv := range gviews {
		v.Group.HistoryOrder += gv.order
		if gv.order > 0 {
			v.example("group %d: history out of seq order %d times", i, gv.order)
		}
		perView := map[string]int64{}
		for _, ev := range gv.history {
			if ev.Kind != protocol.KindMessage || ev.Message == nil || ours[ev.Message.ClientMsgID] == nil {
				continue
			}
			cm := ev.Message.ClientMsgID
			if s, ok := perView[cm]; ok {
				twice[cm] = true
				v.example("group %d: history holds %s at seqs %d and %d", i, cm, s, ev.Seq)
			}
			perView[cm] = ev.Seq
			note(cm, ev.Seq)
		}
	}
	for _, d := range l.devices {
		d.mu.Lock()
		for cm, s := range d.msgSeq {
			if ours[cm] != nil {
				note(cm, s)
			}
		}
		if d.seqSplit > 0 {
			v.example("user %d %s: holds a message at two seqs (%d)", d.user, d.id, d.seqSplit)
		}
		if d.echoed > 0 {
			v.example("user %d %s: got %d of its own messages pushed back", d.user, d.id, d.echoed)
		}
		v.Direct.PushOrder += d.pushOrder
		v.Group.PushOrder += d.pushOrderG
		v.Rejected += d.rejected
		v.Echoed += d.echoed
		v.GroupReceipts += d.receiptsG
		d.mu.Unlock()
		pushed, synced, dropped := d.c.Stats()
		_ = pushed
		if r := synced + dropped - d.syncEvents.Load(); r > 0 {
			v.RedeliveredPushes += r
		}
	}
	for _, m := range acked {
		if m.ackSeq >= 0 {
			note(m.cmid, m.ackSeq)
		}
	}
	for cm := range twice {
		v.of(ours[cm]).StoredTwice++
	}

	// Lost: an acknowledged message missing from any view that must hold it.
	for _, m := range acked {
		where := l.missingViews(m, ix)
		if len(where) > 0 {
			v.of(m).Lost++
			to := fmt.Sprint(m.to)
			if m.group >= 0 {
				to = "group " + strconv.Itoa(m.group)
			}
			v.example("lost %s (%d→%s, acked %s): missing from %v", m.cmid, m.from, to, m.ackAt.Format("15:04:05.000"), where)
		}
		if len(m.idErrors) > 0 {
			v.IDErrors++
			v.example("%s: %v", m.cmid, m.idErrors)
		}
	}
	for _, m := range unacked {
		for _, u := range l.participants(m) {
			if ix.inSync[u][m.cmid] {
				v.UnackedStored++
				break
			}
		}
	}
	// One seq per message across every view (and the first attempt's answer).
	for cm, s := range seqs {
		if len(s) > 1 && !twice[cm] {
			v.of(ours[cm]).SeqMismatch++
			v.example("%s has seqs %v across the views", cm, keys(s))
		}
	}
	// Causal order: a message sent after another one of the same
	// conversation was acknowledged has a higher seq.
	seqOf := func(m *msg) (int64, bool) {
		for s := range seqs[m.cmid] {
			return s, len(seqs[m.cmid]) == 1
		}
		return 0, false
	}
	convs := map[[2]int][]*msg{}
	for _, m := range acked {
		convs[convKey(m)] = append(convs[convKey(m)], m)
	}
	for _, ms := range convs {
		for _, a := range ms {
			sa, ok := seqOf(a)
			if !ok {
				continue
			}
			for _, b := range ms {
				if sb, ok := seqOf(b); ok && b.start.After(a.ackAt) && sb <= sa {
					v.of(b).Causal++
					v.example("%s (seq %d) was sent after %s (seq %d) was acked", b.cmid, sb, a.cmid, sa)
				}
			}
		}
	}
	v.Direct.sumReordered()
	v.Group.sumReordered()
}

// convKey names a message's conversation: the pair of users of a 1:1
// message (smaller first), {-1, group} for a group's.
func convKey(m *msg) [2]int {
	if m.group >= 0 {
		return [2]int{-1, m.group}
	}
	return [2]int{min(m.from, m.to), max(m.from, m.to)}
}

// viewGap is one API view that lacks a message: a user's full sync or
// unread pull (user), or a group's history (user -1, group).
type viewGap struct {
	user, group int
	view        string
}

func (g viewGap) String(m *msg) string {
	switch {
	case g.user < 0:
		return "the group's history"
	case g.user == m.from:
		return "sender's " + g.view
	}
	return fmt.Sprintf("%d's %s", g.user, g.view)
}

// viewGaps lists the API views that lack acknowledged message m: the full
// sync of each participant (the sender included), the unread pull of each
// participant but the sender — unless they read it by sending later into
// the conversation themselves —, a group's history.
func (l *load) viewGaps(m *msg, ix *viewIndex) []viewGap {
	var out []viewGap
	parts := l.participants(m)
	for _, u := range parts {
		if !ix.inSync[u][m.cmid] {
			out = append(out, viewGap{user: u, view: "sync"})
		}
	}
	for _, u := range parts {
		if u == m.from {
			continue
		}
		if conv, ok := ix.convOf[m.cmid]; ok && ix.ownLast[u][conv] > ix.seqIn[m.cmid] {
			continue // read by sending later
		}
		if !ix.inUnread[u][m.cmid] {
			out = append(out, viewGap{user: u, view: "unread pull"})
		}
	}
	if m.group >= 0 && !ix.inHistory[m.cmid] {
		out = append(out, viewGap{user: -1, group: m.group, view: "history"})
	}
	return out
}

// viewGapsOf: the view gaps of every message that has some.
func (l *load) viewGapsOf(ms []*msg, ix *viewIndex) map[*msg][]viewGap {
	out := map[*msg][]viewGap{}
	for _, m := range ms {
		if g := l.viewGaps(m, ix); len(g) > 0 {
			out[m] = g
		}
	}
	return out
}

// missingViews lists where acknowledged message m is missing: the API
// views of viewGaps, and every device of every participant (the sending
// device by its sync).
func (l *load) missingViews(m *msg, ix *viewIndex) []string {
	var where []string
	for _, g := range l.viewGaps(m, ix) {
		where = append(where, g.String(m))
	}
	devs, _ := expectedDevices(l.participants(m), l.byUser, m.from, m.device)
	for _, d := range devs {
		d.mu.Lock()
		_, ok := d.msgSeq[m.cmid]
		d.mu.Unlock()
		if !ok {
			where = append(where, fmt.Sprintf("device %d/%s", d.user, d.id))
		}
	}
	return where
}

// lateWait bounds how long after its first read an API view may still
// lack an acknowledged message before it counts as lost.
const lateWait = 60 * time.Second

type groupView struct {
	history []protocol.Event
	order   int
	err     error
}

// apiViews is the message API's view of every user (full sync, unread
// pull) and every group (history).
type apiViews struct {
	users  []userView
	groups []groupView
}

// readViews reads the views of the given users and groups into av.
func (l *load) readViews(ctx context.Context, hc *http.Client, users, groups map[int]bool, av *apiViews) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var uv userView
			uv.sync, uv.err = fetchAll(ctx, hc, l.api, l.tokens[u], client.SyncPath)
			if uv.err == nil {
				uv.unread, uv.err = fetchAll(ctx, hc, l.api, l.tokens[u], client.UnreadPath)
			}
			av.users[u] = uv
		}()
	}
	for i := range groups {
		g := l.groups[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var gv groupView
			gv.history, gv.order, gv.err = fetchHistory(ctx, hc, l.api, l.tokens[g.members[0]], g.conv)
			av.groups[i] = gv
		}()
	}
	wg.Wait()
}

// viewIndex says which of the load's messages each API view holds.
type viewIndex struct {
	inSync, inUnread []map[string]bool // per user, by client_msg_id
	inHistory        map[string]bool
	// ownLast: per user and conversation, the seq of the user's last
	// message in its sync. Sending marks the conversation read up to the
	// message sent (in a group as in a 1:1 conversation), so the unread
	// pull holds a message only when its recipient sent nothing later in
	// the conversation.
	ownLast []map[string]int64
	convOf  map[string]string // client_msg_id -> conversation, seq (from a sync)
	seqIn   map[string]int64
}

func (l *load) indexViews(av *apiViews) *viewIndex {
	ix := &viewIndex{inSync: make([]map[string]bool, len(av.users)), inUnread: make([]map[string]bool, len(av.users)),
		inHistory: map[string]bool{}, ownLast: make([]map[string]int64, len(av.users)), convOf: map[string]string{}, seqIn: map[string]int64{}}
	ours := func(ev protocol.Event) bool {
		if ev.Kind != protocol.KindMessage || ev.Message == nil {
			return false
		}
		_, ok := l.byCmid.Load(ev.Message.ClientMsgID)
		return ok
	}
	for u, uv := range av.users {
		ix.inSync[u], ix.inUnread[u], ix.ownLast[u] = map[string]bool{}, map[string]bool{}, map[string]int64{}
		for _, ev := range uv.sync {
			if ev.Kind == protocol.KindMessage && ev.From == l.users[u] && ev.Seq > ix.ownLast[u][ev.ConvID] {
				ix.ownLast[u][ev.ConvID] = ev.Seq
			}
			if ours(ev) {
				cm := ev.Message.ClientMsgID
				ix.inSync[u][cm] = true
				ix.convOf[cm], ix.seqIn[cm] = ev.ConvID, ev.Seq
			}
		}
		for _, ev := range uv.unread {
			if ours(ev) {
				ix.inUnread[u][ev.Message.ClientMsgID] = true
			}
		}
	}
	for _, gv := range av.groups {
		for _, ev := range gv.history {
			if ours(ev) {
				ix.inHistory[ev.Message.ClientMsgID] = true
			}
		}
	}
	return ix
}

func keys(m map[int64]bool) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
