package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/protocol"
)

// group is one group chat of the load, created at setup through the
// public API (POST /v1/groups by its owner, the other members with it);
// its members never change during the run.
type group struct {
	id, conv string
	members  []int // the owner first
	senders  []int // the members online during the load
}

// pickMembers draws a group's members from nUsers users: an online owner
// first, then size-1 other users at random, online or not; when offline
// users exist and the draw holds none, its last member is replaced by one
// of them, so every group has members who catch up only at the check.
// size is capped at nUsers. No user appears twice. nil when no user is
// online (nobody could create or send).
func pickMembers(rng *rand.Rand, online []bool, size int) []int {
	var on, off []int
	for u, o := range online {
		if o {
			on = append(on, u)
		} else {
			off = append(off, u)
		}
	}
	if len(on) == 0 || size < 1 {
		return nil
	}
	size = min(size, len(online))
	owner := on[rng.IntN(len(on))]
	perm := rng.Perm(len(online))
	members := []int{owner}
	hasOff := false
	for _, u := range perm {
		if len(members) == size {
			break
		}
		if u == owner {
			continue
		}
		members = append(members, u)
		hasOff = hasOff || !online[u]
	}
	if !hasOff && len(off) > 0 && len(members) > 1 {
		members[len(members)-1] = off[rng.IntN(len(off))]
	}
	return members
}

// participants: the users a message reaches (sync, unread pull, devices),
// the sender included — both sides of a 1:1 message, every member of a
// group's.
func (l *load) participants(m *msg) []int {
	if m.group >= 0 {
		return l.groups[m.group].members
	}
	return []int{m.from, m.to}
}

// expectedDevices: every device that must end up holding m, by push or
// by sync — each device of each participant. pushable says whether the
// device should get it pushed too (if connected): not the device that
// sent it, which gets its own message by sync only (1:1 and groups alike).
func expectedDevices(parts []int, devs map[int][]*device, from int, fromDevice string) (all []*device, pushable []bool) {
	seen := map[int]bool{}
	for _, u := range parts {
		if seen[u] {
			continue
		}
		seen[u] = true
		for _, d := range devs[u] {
			all = append(all, d)
			pushable = append(pushable, !(d.user == from && d.id == fromDevice))
		}
	}
	return all, pushable
}

// createGroups creates n groups of size members (pickMembers) through the
// API, each by its owner with the others as initial members, and waits
// until every connected device of every member holds the group's created
// event (the group is stored and its members' sends are accepted), at
// most timeout.
func (l *load) createGroups(ctx context.Context, n, size int, timeout time.Duration) error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	for i := 0; i < n; i++ {
		ms := pickMembers(rng, l.online, size)
		if len(ms) < 2 {
			return fmt.Errorf("group %d: %d members (users %d, online needed)", i, len(ms), len(l.users))
		}
		g := &group{id: fmt.Sprintf("%s-g%d", l.runID, i), members: ms}
		g.conv = "g:" + g.id
		for _, u := range ms {
			if l.online[u] {
				g.senders = append(g.senders, u)
			}
		}
		l.groups = append(l.groups, g)
	}
	hc := &http.Client{Timeout: 20 * time.Second}
	var wg sync.WaitGroup
	errs := make([]error, len(l.groups))
	for i, g := range l.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var names []string
			for _, u := range g.members[1:] {
				names = append(names, l.users[u])
			}
			req := map[string]any{"group_id": g.id, "name": "chaos " + g.id, "members": names}
			// Not one of the devices: the created event is pushed to every member
			// device but the one that caused it.
			api := client.API{BaseURL: "http://" + l.api, Token: l.tokens[g.members[0]], Device: "setup", HTTP: hc}
			var err error
			for try := 0; try < 5; try++ {
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err = api.Do(cctx, http.MethodPost, "/v1/groups", req, nil) // a retried create answers 200
				cancel()
				if err == nil {
					break
				}
				time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
			}
			if err != nil {
				errs[i] = fmt.Errorf("while creating group %s: %w", g.id, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	// The created event on every connected member device: the pipeline
	// stored the group and pushed it.
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for _, g := range l.groups {
			for _, u := range g.members {
				for _, d := range l.byUserDevices(u) {
					if !d.hasGroupEvent(g.conv, protocol.GroupCreated) {
						missing++
					}
				}
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d member devices lack their group's created event %v after the create", missing, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *load) byUserDevices(u int) []*device {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*device(nil), l.byUser[u]...)
}

func (d *device) hasGroupEvent(conv string, op protocol.GroupOp) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range d.have[conv] {
		if ev.Kind == protocol.KindGroup && ev.Group != nil && ev.Group.Op == op {
			return true
		}
	}
	return false
}

// fetchHistory reads a conversation's whole history (newest first, every
// page) as user token; order counts the pages' entries out of order
// (each must have a lower seq than the one before).
func fetchHistory(ctx context.Context, hc *http.Client, api, token, conv string) (evs []protocol.Event, order int, err error) {
	before := ""
	last := int64(-1)
	for page := 0; page < 10000; page++ {
		var p struct {
			Messages   []protocol.Event `json:"messages"`
			NextBefore *int64           `json:"next_before"`
			HasMore    bool             `json:"has_more"`
		}
		path := "/v1/conversations/" + url.PathEscape(conv) + "/messages?limit=100"
		if before != "" {
			path += "&before=" + before
		}
		for try := 0; try < 5; try++ {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			a := client.API{BaseURL: "http://" + api, Token: token, HTTP: hc}
			err = a.Get(cctx, path, &p)
			cancel()
			if err == nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 500 * time.Millisecond)
		}
		if err != nil {
			return evs, order, fmt.Errorf("while reading the history of %s: %w", conv, err)
		}
		for _, ev := range p.Messages {
			if last >= 0 && ev.Seq >= last {
				order++
			}
			last = ev.Seq
		}
		evs = append(evs, p.Messages...)
		if !p.HasMore || p.NextBefore == nil {
			return evs, order, nil
		}
		before = strconv.FormatInt(*p.NextBefore, 10)
	}
	return evs, order, fmt.Errorf("history of %s: more than 10000 pages", conv)
}
