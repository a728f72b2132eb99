package e2e

import (
	"context"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// TestLeaseLossSyncHint: a push process stopped past its presence lease
// (3 s here) drops out of presence while its device stays connected;
// messages sent meanwhile are stored but pushed to nobody. After SIGCONT
// the node re-registers and sends the device a sync frame (lease_lost); the
// device syncs and has every message — without reconnecting, so only the
// hint can have brought them (issue 11: before it, they came at the next
// login, hours later).
func TestLeaseLossSyncHint(t *testing.T) {
	c := newCluster(t)
	p := c.startPush("push-s")
	var hints atomic.Int64
	fred := c.connectWith(func(cfg *client.Config) {
		cfg.OnSyncHint = func(r string) {
			if r == presence.ReasonLeaseLost {
				hints.Add(1)
			}
		}
	}, "fred", "fred-phone", "ios", p.wsURL)
	eventually(t, "fred's presence", 10*time.Second, func() bool { return c.sessions("fred") == 1 })

	c.kill("push-s", syscall.SIGSTOP)
	stopped := time.Now()
	eventually(t, "fred's session to expire with push-s's lease", 20*time.Second, func() bool { return c.sessions("fred") == 0 })
	texts := []string{"while you were away 1", "while you were away 2", "while you were away 3"}
	for _, s := range texts {
		c.send("gina", "gina-phone", "fred", s)
	}
	// Stored (and so routed: the pipeline routes right after it stores,
	// and fred had no session) before push-s runs again: a push after the
	// re-registration cannot bring them, only a sync.
	conv := model.ConvID("fred", "gina")
	eventually(t, "the messages stored", 20*time.Second, func() bool {
		var page struct {
			Messages []protocol.Event `json:"messages"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.api("gina", "gina-phone").Get(ctx, "/v1/conversations/"+conv+"/messages", &page); err != nil {
			return false
		}
		return len(page.Messages) >= len(texts)
	})
	c.kill("push-s", syscall.SIGCONT)
	t.Logf("push-s stopped for %v", time.Since(stopped).Round(time.Millisecond))
	resumed := time.Now()
	fred.await(t, "fred to get the messages sent while his node was out of presence", 20*time.Second, func() bool {
		for _, s := range texts {
			if !hasText(fred.events, s) {
				return false
			}
		}
		return true
	})
	t.Logf("messages on fred's device %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	if hints.Load() == 0 {
		t.Fatal("no lease_lost sync frame reached the device")
	}
	fred.mu.Lock()
	defer fred.mu.Unlock()
	if len(fred.disc) != 0 {
		t.Fatalf("the device reconnected (%v): the test's premise (connection kept) broke", fred.disc)
	}
	for i, e := range fred.events {
		if fred.pushed[i] && e.Message != nil && e.Message.Body != nil && slices.Contains(texts, e.Message.Body.Text) {
			t.Fatalf("%q was pushed, not synced: the test's premise (routed while out of presence) broke", e.Message.Body.Text)
		}
	}
}
