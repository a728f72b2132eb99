//go:build linux

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

// TestGroupFanOut: a group whose members are spread over both push nodes
// (some with a device on each), some offline until the end; four members
// send concurrently. Every online device gets every message once, by push
// (its own sends excepted), in one order; the offline members get all of
// them by sync on login; nothing is lost or seen twice.
func TestGroupFanOut(t *testing.T) {
	c := newCluster(t)
	a := c.startPush("push-a")
	b := c.startPush("push-b")
	const gid, members, offline, senders, perSender = "fanout", 12, 3, 4, 25
	conv := model.GroupConvID(gid)
	var users []string
	for i := range members {
		users = append(users, fmt.Sprintf("m%02d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	owner := &sdk.Client{BaseURL: c.apiURL, Token: c.token(users[0])}
	if _, err := owner.CreateGroup(ctx, users[0], sdk.NewGroup{GroupID: gid, Name: "Fan-out", Members: users[1:]}); err != nil {
		t.Fatal(err)
	}
	// Online: members 0..8, alternating nodes; every third one also has a
	// second device on the other node. Offline: the last three.
	var devs []*device
	owners := map[*device]string{}
	phones := map[string]*device{}
	for i, u := range users[:members-offline] {
		first, second := a.wsURL, b.wsURL
		if i%2 == 1 {
			first, second = second, first
		}
		d := c.connect(u, u+"-phone", "ios", first)
		devs, owners[d], phones[u] = append(devs, d), u, d
		if i%3 == 0 {
			d2 := c.connect(u, u+"-web", "web", second)
			devs, owners[d2] = append(devs, d2), u
		}
	}
	eventually(t, "every online member registered", 15*time.Second, func() bool {
		for _, u := range users[:members-offline] {
			if c.sessions(u) == 0 {
				return false
			}
		}
		return true
	})

	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := c.api(users[s], users[s]+"-phone")
			for i := range perSender {
				_, err := api.Send(ctx, client.SendRequest{GroupID: gid, ClientMsgID: testdeps.Unique("g"), Type: protocol.TypeText,
					Body: &protocol.Body{Text: fmt.Sprintf("%s #%d", users[s], i)}})
				if err != nil {
					t.Errorf("send %s #%d: %v", users[s], i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	const total = senders * perSender
	var order []string
	for _, d := range devs {
		d.await(t, owners[d]+"'s device to get every group message", 60*time.Second, func() bool {
			texts, _ := d.messagesLocked(conv)
			return len(texts) == total
		})
		texts, dups := d.messages(conv)
		if dups != 0 {
			t.Errorf("%s got %d messages twice", owners[d], dups)
		}
		if order == nil {
			order = texts
		} else if !slices.Equal(order, texts) {
			t.Fatalf("%s's order differs:\n%v\n%v", owners[d], texts, order)
		}
	}
	for _, u := range users[:senders] {
		if hasPushedOwn(phones[u], u+" #0") {
			t.Errorf("%s's sending device got its own message pushed back", u)
		}
	}
	// The offline members log in and sync.
	for _, u := range users[members-offline:] {
		d := c.connect(u, u+"-phone", "ios", b.wsURL)
		d.await(t, u+" to sync every group message", 60*time.Second, func() bool {
			texts, _ := d.messagesLocked(conv)
			return len(texts) == total
		})
		texts, dups := d.messages(conv)
		if dups != 0 || !slices.Equal(texts, order) {
			t.Fatalf("%s synced %d messages (%d twice), order equal: %v", u, len(texts), dups, slices.Equal(texts, order))
		}
	}
}
