package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// TestPickMembers: an online owner first, no one twice, the size capped at
// the users, and at least one offline member whenever offline users exist.
func TestPickMembers(t *testing.T) {
	mk := func(n, off int) []bool {
		o := make([]bool, n)
		for i := off; i < n; i++ {
			o[i] = true
		}
		return o
	}
	cases := []struct {
		name    string
		online  []bool
		size    int
		want    int  // members
		wantOff bool // holds an offline member
	}{
		{"500 users, 10% offline", mk(500, 50), 20, 20, true},
		{"40 users, 4 offline", mk(40, 4), 20, 20, true},
		{"one offline among many", mk(1000, 1), 5, 5, true},
		{"size above the users", mk(10, 2), 50, 10, true},
		{"nobody offline", mk(30, 0), 20, 20, false},
		{"nobody online", mk(10, 10), 5, 0, false},
		{"two users", mk(2, 1), 20, 2, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(0); seed < 50; seed++ {
				rng := rand.New(rand.NewPCG(seed, 1))
				got := pickMembers(rng, tc.online, tc.size)
				if len(got) != tc.want {
					t.Fatalf("seed %d: %d members %v, want %d", seed, len(got), got, tc.want)
				}
				if len(got) == 0 {
					continue
				}
				if !tc.online[got[0]] {
					t.Fatalf("seed %d: owner %d is offline", seed, got[0])
				}
				s := slices.Clone(got)
				slices.Sort(s)
				if len(slices.Compact(s)) != len(got) {
					t.Fatalf("seed %d: a member twice: %v", seed, got)
				}
				hasOff := slices.ContainsFunc(got, func(u int) bool { return !tc.online[u] })
				if hasOff != tc.wantOff {
					t.Fatalf("seed %d: offline member %v, want %v (%v)", seed, hasOff, tc.wantOff, got)
				}
			}
		})
	}
}

// TestExpectedDevices: every device of every participant must hold a
// message; all but the sending device get it pushed (1:1 and group alike).
func TestExpectedDevices(t *testing.T) {
	devs := map[int][]*device{}
	for u := 0; u < 5; u++ {
		devs[u] = []*device{{user: u, id: "d0"}, {user: u, id: "d1"}}
	}
	devs[4] = nil // an offline user who never connected
	cases := []struct {
		name       string
		parts      []int
		from       int
		fromDevice string
		want       []string // user/device, (p) when pushable
	}{
		{"1:1", []int{0, 1}, 0, "d1", []string{"0/d0 (p)", "0/d1", "1/d0 (p)", "1/d1 (p)"}},
		{"group", []int{2, 0, 1}, 0, "d0", []string{"2/d0 (p)", "2/d1 (p)", "0/d0", "0/d1 (p)", "1/d0 (p)", "1/d1 (p)"}},
		{"group with a member never connected", []int{3, 4}, 3, "d1", []string{"3/d0 (p)", "3/d1"}},
		{"a participant twice", []int{1, 1}, 1, "d0", []string{"1/d0", "1/d1 (p)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all, push := expectedDevices(tc.parts, devs, tc.from, tc.fromDevice)
			var got []string
			for i, d := range all {
				s := fmt.Sprintf("%d/%s", d.user, d.id)
				if push[i] {
					s += " (p)"
				}
				got = append(got, s)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMissingViews: where an acknowledged message must be. Users 0–3;
// group 0 has members 0, 1, 2; every user has one device.
func TestMissingViews(t *testing.T) {
	const conv1, convG = "1:1", "g:x-g0"
	newLoad := func() *load {
		l := &load{users: []string{"u0", "u1", "u2", "u3"}, byUser: map[int][]*device{},
			groups: []*group{{id: "x-g0", conv: convG, members: []int{0, 1, 2}}}}
		for u := range l.users {
			l.byUser[u] = []*device{{user: u, id: "d0", msgSeq: map[string]int64{}}}
		}
		return l
	}
	type state struct {
		sync, unread []int         // users whose view holds the message
		history      bool          // the group's history holds it
		devices      []int         // users whose device holds it
		ownLast      map[int]int64 // a user's last own message in the conversation
	}
	cases := []struct {
		name string
		m    [3]int // from, to, group
		st   state
		want []string
	}{
		{"1:1 everywhere", [3]int{0, 1, -1}, state{sync: []int{0, 1}, unread: []int{1}, devices: []int{0, 1}}, nil},
		{"1:1 read by replying", [3]int{0, 1, -1},
			state{sync: []int{0, 1}, devices: []int{0, 1}, ownLast: map[int]int64{1: 11}}, nil},
		{"1:1 reply before it is no read", [3]int{0, 1, -1},
			state{sync: []int{0, 1}, devices: []int{0, 1}, ownLast: map[int]int64{1: 9}}, []string{"1's unread pull"}},
		{"1:1 lost on the sender's device", [3]int{0, 1, -1},
			state{sync: []int{0, 1}, unread: []int{1}, devices: []int{1}}, []string{"device 0/d0"}},
		{"group everywhere", [3]int{0, -1, 0},
			state{sync: []int{0, 1, 2}, unread: []int{1, 2}, history: true, devices: []int{0, 1, 2}}, nil},
		{"group: not in the history", [3]int{0, -1, 0},
			state{sync: []int{0, 1, 2}, unread: []int{1, 2}, devices: []int{0, 1, 2}}, []string{"the group's history"}},
		{"group: one member lacks it everywhere", [3]int{1, -1, 0},
			state{sync: []int{0, 1}, unread: []int{0}, history: true, devices: []int{0, 1}},
			[]string{"2's sync", "2's unread pull", "device 2/d0"}},
		{"group: a member read it by sending later", [3]int{0, -1, 0},
			state{sync: []int{0, 1, 2}, unread: []int{1}, history: true, devices: []int{0, 1, 2}, ownLast: map[int]int64{2: 12}}, nil},
		{"group: the sender's own later send is no excuse for others", [3]int{0, -1, 0},
			state{sync: []int{0, 1, 2}, unread: []int{1}, history: true, devices: []int{0, 1, 2}, ownLast: map[int]int64{0: 12}},
			[]string{"2's unread pull"}},
		{"group: a non-member is not asked", [3]int{2, -1, 0},
			state{sync: []int{0, 1, 2}, unread: []int{0, 1}, history: true, devices: []int{0, 1, 2}}, nil},
		{"group: sender's sync", [3]int{2, -1, 0},
			state{sync: []int{0, 1}, unread: []int{0, 1}, history: true, devices: []int{0, 1, 2}}, []string{"sender's sync"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLoad()
			m := &msg{from: tc.m[0], to: tc.m[1], group: tc.m[2], cmid: "c1", device: "d0"}
			conv := conv1
			if m.group >= 0 {
				conv = convG
			}
			inSync, inUnread := make([]map[string]bool, 4), make([]map[string]bool, 4)
			ownLast := make([]map[string]int64, 4)
			for u := range 4 {
				inSync[u], inUnread[u], ownLast[u] = map[string]bool{}, map[string]bool{}, map[string]int64{}
				if s, ok := tc.st.ownLast[u]; ok {
					ownLast[u][conv] = s
				}
			}
			for _, u := range tc.st.sync {
				inSync[u]["c1"] = true
			}
			for _, u := range tc.st.unread {
				inUnread[u]["c1"] = true
			}
			for _, u := range tc.st.devices {
				l.byUser[u][0].msgSeq["c1"] = 10
			}
			inHistory := map[string]bool{"c1": tc.st.history}
			ix := &viewIndex{inSync: inSync, inUnread: inUnread, inHistory: inHistory, ownLast: ownLast,
				convOf: map[string]string{"c1": conv}, seqIn: map[string]int64{"c1": 10}}
			got := l.missingViews(m, ix)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeviceGroupCounts: a device counts pushes out of order per kind of
// conversation, its own messages pushed back, and receipts in groups.
func TestDeviceGroupCounts(t *testing.T) {
	l := &load{tl: &timeline{t0: time.Now()}}
	l.byCmid.Store("own", &msg{cmid: "own", from: 0, device: "d0", group: 0})
	l.byCmid.Store("other", &msg{cmid: "other", from: 1, device: "d0", group: 0})
	d := &device{user: 0, id: "d0", have: map[string]map[int64]protocol.Event{}, msgSeq: map[string]int64{}, lastPushed: map[string]int64{}}
	ev := func(conv string, seq int64, kind protocol.Kind, cmid string) protocol.Event {
		e := protocol.Event{Kind: kind, ConvID: conv, Seq: seq}
		if kind == protocol.KindMessage {
			e.Message = &protocol.Message{ClientMsgID: cmid}
		}
		return e
	}
	d.onEvent(l, ev("g:a", 5, protocol.KindMessage, "other"), true)
	d.onEvent(l, ev("g:a", 3, protocol.KindMessage, "x"), true)    // below 5: out of order
	d.onEvent(l, ev("g:a", 4, protocol.KindMessage, "own"), false) // own, by sync: fine
	d.onEvent(l, ev("g:b", 7, protocol.KindMessage, "own2"), true) // unknown cmid
	d.onEvent(l, ev("g:b", 8, protocol.KindDelivered, ""), false)  // a receipt in a group
	d.onEvent(l, ev("u0:u1", 9, protocol.KindDelivered, ""), true) // 1:1 receipts are fine
	d.onEvent(l, ev("u0:u1", 2, protocol.KindMessage, "y"), true)  // 1:1 out of order
	d.onEvent(l, ev("g:c", 1, protocol.KindMessage, "own"), true)  // own, pushed back
	if d.pushOrderG != 1 || d.pushOrder != 1 || d.echoed != 1 || d.receiptsG != 1 {
		t.Fatalf("pushOrderG %d pushOrder %d echoed %d receiptsG %d, want 1 each", d.pushOrderG, d.pushOrder, d.echoed, d.receiptsG)
	}
}
