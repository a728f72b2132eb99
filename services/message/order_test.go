package message_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

// Invariant 3: many concurrent senders (both participants, several devices
// each) in one conversation — history, sync (both users) and the routed
// deliveries show one and the same order.
func TestConcurrentSendersOneOrder(t *testing.T) {
	e := newEnv(t, 4)
	e.start(t, server.RoleAll)
	conv := model.ConvID("alice", "bob")
	const devices, perDevice = 8, 25
	var wg sync.WaitGroup
	for d := range devices {
		from, to := "alice", "bob"
		if d%2 == 1 {
			from, to = "bob", "alice"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perDevice {
				e.send(t, from, text(to, fmt.Sprintf("d%d-%d", d, i), fmt.Sprintf("message %d from device %d", i, d)),
					auth.HeaderDevice, fmt.Sprintf("dev%d", d))
			}
		}()
	}
	wg.Wait()
	n := devices * perDevice
	e.waitPersisted(t, conv, n)

	seqs := func(evs []protocol.Event) []int64 {
		var out []int64
		for _, ev := range evs {
			if ev.ConvID == conv && ev.Kind == protocol.KindMessage {
				out = append(out, ev.Seq)
			}
		}
		return out
	}
	hist := e.history(t, "bob", conv, 37)
	want := seqs(hist)
	if len(want) != n || !slices.IsSorted(want) {
		t.Fatalf("history: %d messages, sorted=%v", len(want), slices.IsSorted(want))
	}
	ids := map[int64]string{}
	for _, ev := range hist {
		ids[ev.Seq] = ev.Message.MsgID
	}
	for _, u := range []string{"alice", "bob"} {
		evs, _ := e.syncAll(t, u, "", 23)
		if got := seqs(evs); !slices.Equal(got, want) {
			t.Fatalf("sync of %s differs from history:\n got %v\nwant %v", u, got, want)
		}
		for _, ev := range evs {
			if ids[ev.Seq] != ev.Message.MsgID {
				t.Fatalf("seq %d: sync has %s, history %s", ev.Seq, ev.Message.MsgID, ids[ev.Seq])
			}
		}
	}
	// A batch is routed beside the bookkeeping waitPersisted awaits, so
	// the last batch may still be on its way to the router.
	var all []pipeline.Routed
	msgtest.Eventually(t, 30*time.Second, fmt.Sprintf("%d messages routed", n), func() bool {
		all = e.router.All()
		k := 0
		for _, r := range all {
			if r.Event.ConvID == conv && r.Event.Kind == protocol.KindMessage {
				k++
			}
		}
		return k >= n
	})
	var routed []int64
	for _, r := range all {
		if r.Event.ConvID != conv {
			continue
		}
		routed = append(routed, r.Event.Seq)
		if r.ExceptDevice != r.Event.DeviceID || r.ExceptDevice == "" {
			t.Fatalf("routed %d: except %q, caused by %q", r.Event.Seq, r.ExceptDevice, r.Event.DeviceID)
		}
		if !slices.Equal(r.Users, []string{r.Event.From, peerOf(conv, r.Event.From)}) {
			t.Fatalf("routed %d to %v", r.Event.Seq, r.Users)
		}
	}
	if !slices.Equal(routed, want) {
		t.Fatalf("routed order differs from history:\n got %v\nwant %v", routed, want)
	}
}

func peerOf(conv, u string) string { p, _ := model.Peer(conv, u); return p }
