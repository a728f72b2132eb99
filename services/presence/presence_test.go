package presence

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/test/testdeps"
)

func setup(t *testing.T) (*clientv3.Client, string, *Cache) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: testdeps.Etcd(t), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "/" + testdeps.Unique("presence")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_, _ = cli.Delete(dctx, prefix, clientv3.WithPrefix())
		_ = cli.Close()
	})
	c := NewCache(cli, prefix, nil)
	go c.Run(ctx)
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cli, prefix, c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type kick struct {
	user, term string
	epoch      int64
}

func TestRegistrarCacheKickAndLogout(t *testing.T) {
	cli, prefix, cache := setup(t)
	kicks := make(chan kick, 4)
	a := NewRegistrar(cli, prefix, Node{ID: "a", DeliverURL: "http://a"}, 3*time.Second,
		func(u, term string, e int64) { kicks <- kick{u, term, e} }, nil)
	b := NewRegistrar(cli, prefix, Node{ID: "b", DeliverURL: "http://b"}, 3*time.Second, nil, nil)
	ctx := context.Background()
	for _, r := range []*Registrar{a, b} {
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close(ctx) })
	}
	waitFor(t, "both nodes in the cache", func() bool { _, okA := cache.Node("a"); _, okB := cache.Node("b"); return okA && okB })

	s1 := Session{UserID: "u", DeviceID: "d1", Terminal: "ios", NodeID: "a", Epoch: 1}
	if prev, err := a.Login(ctx, s1); err != nil || prev != nil {
		t.Fatalf("first login: %v %v", prev, err)
	}
	web := Session{UserID: "u", DeviceID: "w", Terminal: "web", NodeID: "b", Epoch: 5}
	if _, err := b.Login(ctx, web); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two sessions", func() bool { return len(cache.Sessions("u")) == 2 })

	// Same terminal on node b: a is told to kick epoch 1.
	s2 := Session{UserID: "u", DeviceID: "d2", Terminal: "ios", NodeID: "b", Epoch: 2}
	prev, err := b.Login(ctx, s2)
	if err != nil || prev == nil || prev.Epoch != 1 || prev.NodeID != "a" {
		t.Fatalf("second login replaced %+v (%v)", prev, err)
	}
	select {
	case k := <-kicks:
		if k != (kick{"u", "ios", 1}) {
			t.Fatalf("kick %+v", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node a was not told to kick")
	}
	// a's late logout of the old session must not remove b's new one.
	if err := a.Logout(ctx, s1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new ios session to stay", func() bool {
		for _, s := range cache.Sessions("u") {
			if s.Terminal == "ios" && s.Epoch == 2 {
				return true
			}
		}
		return false
	})
	if err := b.Logout(ctx, web); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web logout", func() bool { return len(cache.Sessions("u")) == 1 })
	if err := b.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b deregistered", func() bool { _, ok := cache.Node("b"); return !ok })
}

func TestRegistrarSurvivesLeaseLoss(t *testing.T) {
	cli, prefix, cache := setup(t)
	r := NewRegistrar(cli, prefix, Node{ID: "n", DeliverURL: "http://n"}, 2*time.Second, nil, nil)
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(ctx) })
	if _, err := r.Login(ctx, Session{UserID: "x", DeviceID: "d", Terminal: "web", NodeID: "n", Epoch: 9}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "session", func() bool { return len(cache.Sessions("x")) == 1 })
	old := r.Lease()
	// What an etcd outage longer than the TTL does: the lease is gone, and
	// its keys with it, at the revoke's revision.
	rv, err := cli.Revoke(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	gone := rv.Header.Revision
	// The registrar writes both keys again under a new lease. (It takes the
	// new lease before it rewrites the sessions, and the cache still shows
	// the old entries until it applies the deletes: neither says they are
	// back.)
	k := newKeys(prefix)
	var rewritten int64
	waitFor(t, "node and session rewritten under a new lease", func() bool {
		lease := r.Lease()
		if lease == old {
			return false
		}
		rewritten = 0
		for _, key := range []string{k.node("n"), k.session("x", "web")} {
			resp, err := cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) == 0 || clientv3.LeaseID(resp.Kvs[0].Lease) != lease {
				return false
			}
			rewritten = max(rewritten, resp.Kvs[0].ModRevision)
		}
		return true
	})
	if rewritten <= gone {
		t.Fatalf("keys rewritten at revision %d, not after the revoke (%d)", rewritten, gone)
	}
	// The cache applies the watch in revision order: once it is at the
	// rewrite it has applied the deletes, and must show the entries again.
	waitFor(t, "the cache at the rewrite", func() bool {
		cache.mu.RLock()
		defer cache.mu.RUnlock()
		return cache.rev >= rewritten
	})
	if _, ok := cache.Node("n"); !ok || len(cache.Sessions("x")) != 1 {
		_, ok := cache.Node("n")
		t.Fatalf("cache past the rewrite (revision %d) shows node %v, sessions %v", rewritten, ok, cache.Sessions("x"))
	}
}
