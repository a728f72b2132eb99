package presence

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func startRegistrar(t *testing.T, cli *clientv3.Client, prefix, id string, ttl time.Duration, resyncs chan string) *Registrar {
	t.Helper()
	r := NewRegistrar(cli, prefix, Node{ID: id, DeliverURL: "http://" + id}, ttl, nil, nil)
	if resyncs != nil {
		r.OnResync(func(reason string) { resyncs <- reason })
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

func awaitReason(t *testing.T, ch chan string, want string, within time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("OnResync(%q), want %q", got, want)
		}
	case <-time.After(within):
		t.Fatalf("no OnResync(%q) within %s", want, within)
	}
}

func keyExists(t *testing.T, cli *clientv3.Client, key string) bool {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) > 0
}

// A router's hint reaches the node (OnResync with its reason) and is
// deleted before the hook runs, so the next hint is written again; a
// hint for a node that is not registered writes nothing.
func TestHintReachesNode(t *testing.T) {
	cli, prefix, cache := setup(t)
	resyncs := make(chan string, 4)
	r := startRegistrar(t, cli, prefix, "h", 3*time.Second, resyncs)
	waitFor(t, "node in the cache", func() bool { _, ok := cache.Node("h"); return ok })
	ctx := context.Background()
	k := newKeys(prefix)
	for i := 0; i < 2; i++ {
		if err := cache.Hint(ctx, "h", ReasonRouteSkipped); err != nil {
			t.Fatal(err)
		}
		awaitReason(t, resyncs, ReasonRouteSkipped, 5*time.Second)
		if keyExists(t, cli, k.hint("h")) {
			t.Fatalf("hint %d still in etcd after OnResync", i)
		}
	}
	if err := cache.Hint(ctx, "nobody", ReasonRouteSkipped); err != nil {
		t.Fatal(err)
	}
	if keyExists(t, cli, k.hint("nobody")) {
		t.Fatal("a hint was written for a node that is not registered")
	}
	// The hint key lives under the node's lease: it goes with the node.
	r.Abandon()
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(cacheLease(cache, "h"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node gone from the cache", func() bool { _, ok := cache.Node("h"); return !ok })
	if err := cache.Hint(ctx, "h", ReasonRouteSkipped); err != nil {
		t.Fatal(err)
	}
	if keyExists(t, cli, k.hint("h")) {
		t.Fatal("a hint was written for a node whose lease is gone")
	}
}

func cacheLease(c *Cache, node string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return int64(c.leases[node])
}

// After losing its lease the node re-registers, is healthy again and calls
// OnResync(lease_lost); a hint sent with the stale lease of a cache that
// has not seen the re-registration still arrives (Hint reads the new lease).
func TestResyncAfterLeaseLoss(t *testing.T) {
	cli, prefix, cache := setup(t)
	resyncs := make(chan string, 4)
	r := startRegistrar(t, cli, prefix, "l", 2*time.Second, resyncs)
	waitFor(t, "node in the cache", func() bool { _, ok := cache.Node("l"); return ok })
	if !r.Healthy() {
		t.Fatal("not healthy after Start")
	}
	ctx := context.Background()
	old := r.Lease()
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	awaitReason(t, resyncs, ReasonLeaseLost, 10*time.Second)
	if !r.Healthy() || r.Lease() == old {
		t.Fatalf("after re-registration: healthy %v, lease %x (old %x)", r.Healthy(), r.Lease(), old)
	}
	// A cache that still holds the old lease.
	cache.mu.Lock()
	cache.leases["l"] = old
	cache.mu.Unlock()
	if err := cache.Hint(ctx, "l", ReasonStaleRoute); err != nil {
		t.Fatal(err)
	}
	awaitReason(t, resyncs, ReasonStaleRoute, 5*time.Second)
}

// A logout that runs while the registrar rewrites its sessions under a new
// lease must not leave the session registered (issue 11: the rewrite put
// the key back after the logout's delete had found nothing to delete).
func TestLogoutDuringReregistration(t *testing.T) {
	cli, prefix, _ := setup(t)
	r := NewRegistrar(cli, prefix, Node{ID: "g", DeliverURL: "http://g"}, 2*time.Second, nil, nil)
	s := Session{UserID: "u", DeviceID: "d", Terminal: "ios", NodeID: "g", Epoch: 7}
	ctx := context.Background()
	loggedOut := make(chan error, 1)
	r.beforeRewrite = func() { loggedOut <- r.Logout(ctx, s) }
	resyncs := make(chan string, 2)
	r.OnResync(func(reason string) { resyncs <- reason })
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(ctx) })
	if _, err := r.Login(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, r.Lease()); err != nil {
		t.Fatal(err)
	}
	awaitReason(t, resyncs, ReasonLeaseLost, 10*time.Second)
	if err := <-loggedOut; err != nil {
		t.Fatal(err)
	}
	if keyExists(t, cli, newKeys(prefix).session("u", "ios")) {
		t.Fatal("the session logged out during re-registration is still registered")
	}
	if !keyExists(t, cli, newKeys(prefix).node("g")) {
		t.Fatal("the node is not registered after re-registration")
	}
}
