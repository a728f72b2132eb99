package push_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

// hinted connects a device that records the reasons of its sync frames.
func (c *cluster) hinted(n *node, user, device string) (*recorder, chan string) {
	reasons := make(chan string, 8)
	rec := newRecorder()
	cl := client.New(client.Config{URLs: []string{n.wsURL}, Token: c.token(user, time.Hour), OnEvent: rec.on,
		DeviceID: device, Terminal: "ios", NoSync: true, OnSyncHint: func(r string) { reasons <- r }})
	cl.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return rec, reasons
}

func awaitHint(t *testing.T, reasons chan string, want string, within time.Duration) time.Time {
	t.Helper()
	select {
	case r := <-reasons:
		if r != want {
			t.Fatalf("sync frame with reason %q, want %q", r, want)
		}
		return time.Now()
	case <-time.After(within):
		t.Fatalf("no sync frame (%s) within %s", want, within)
	}
	return time.Time{}
}

func fastSync(o *push.Options) {
	o.SyncSpread = 100 * time.Millisecond
	o.ResyncAfter = 500 * time.Millisecond
}

// A router that skips a batch for a node that does not answer in time
// (its delivery listener wedged, its WebSocket side alive) leaves a hint
// in etcd; the node tells its connected devices to sync.
func TestSkippedBatchTellsDevicesToSync(t *testing.T) {
	c := newCluster(t)
	stop := make(chan struct{})
	wedged := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(wedged.Close)
	t.Cleanup(func() { close(stop) }) // runs first: Close waits for the handlers
	c.deliverURL = func(string, string) string { return wedged.URL }
	n := c.startNode("n-w", fastSync)
	_, reasons := c.hinted(n, "carol", "carol-phone")
	c.waitSessions("carol", 1)
	tokens, _ := route.NewTokenSource(internalKey, "msg-1")
	r := route.New(route.Options{Directory: c.cache, Tokens: tokens, GiveUpAfter: 300 * time.Millisecond})
	if err := r.Deliver(context.Background(), []route.Item{{Event: msgEvent("p:bob:carol", "bob", "carol", 1, "bob-phone"),
		Users: []string{"carol"}}}); err != nil {
		t.Fatal(err)
	}
	awaitHint(t, reasons, presence.ReasonRouteSkipped, 5*time.Second)
	// The next batch finds the breaker open: skipped at once, hinted again.
	t0 := time.Now()
	if err := r.Deliver(context.Background(), []route.Item{{Event: msgEvent("p:bob:carol", "bob", "carol", 2, "bob-phone"),
		Users: []string{"carol"}}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 250*time.Millisecond {
		t.Fatalf("a batch for a node with an open breaker took %v", d)
	}
	awaitHint(t, reasons, presence.ReasonRouteSkipped, 5*time.Second)
}

// A node that lost its lease re-registers and tells its devices to sync,
// twice (at once and ResyncAfter later, for the message pods' watch lag);
// deliveries reach the device again afterwards.
func TestLeaseLossTellsDevicesToSync(t *testing.T) {
	c := newCluster(t)
	n := c.startNode("n-l", fastSync)
	rec, reasons := c.hinted(n, "dave", "dave-phone")
	c.waitSessions("dave", 1)
	if _, err := c.cli.Revoke(context.Background(), n.reg.Lease()); err != nil {
		t.Fatal(err)
	}
	first := awaitHint(t, reasons, presence.ReasonLeaseLost, 10*time.Second)
	second := awaitHint(t, reasons, presence.ReasonLeaseLost, 5*time.Second)
	if d := second.Sub(first); d < 400*time.Millisecond {
		t.Fatalf("second sync frame %v after the first, want about ResyncAfter (500 ms)", d)
	}
	if !n.reg.Healthy() {
		t.Fatal("registrar not healthy after re-registration")
	}
	c.waitSessions("dave", 1)
	if err := c.router.Deliver(context.Background(), []route.Item{{Event: msgEvent("p:erin:dave", "erin", "dave", 5, "erin-phone"),
		Users: []string{"dave"}}}); err != nil {
		t.Fatal(err)
	}
	rec.waitCount(t, 1, 5*time.Second)
}
