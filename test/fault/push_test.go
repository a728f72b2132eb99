package fault

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/route"
	"github.com/imcluster/imcluster/test/testdeps"
)

func has(hints []string, want string) bool { return slices.Contains(hints, want) }

// TestWedgedPushNodeDoesNotStallRouting: SIGSTOP of a registered push
// process (wedged: its lease outlives the stop) must not hold the
// deliveries to another node beyond the breaker's bound: the first batch
// waits GiveUpAfter (5 s), later ones skip the wedged node at once, but for
// one probe (1 s) per backoff. After SIGCONT the wedged node's device gets
// a sync hint (route_skipped) and pushes reach it again.
func TestWedgedPushNodeDoesNotStallRouting(t *testing.T) {
	w := newPushWorld(t, nil, config.EnvPresenceLeaseTTL+"=60s", config.EnvHeartbeatInterval+"=10s")
	a, b := w.start("push-a"), w.start("push-b")
	da, db := w.connect(a, "ua", "ua-phone"), w.connect(b, "ub", "ub-phone")
	ctx := context.Background()
	seq := int64(1)
	deliver := func() time.Duration {
		t0 := time.Now()
		if err := w.router.Deliver(ctx, []route.Item{{Event: msg("c", seq), Users: []string{"ua", "ub"}}}); err != nil {
			t.Fatal(err)
		}
		seq++
		return time.Since(t0)
	}
	deliver()
	for _, d := range []*device{da, db} {
		d.await(t, "first push", 10*time.Second, func(s []int64, _ []string) bool { return len(s) == 1 })
	}

	w.signal(a, syscall.SIGSTOP)
	stopped := time.Now()
	first := seq
	var durations []time.Duration
	for time.Since(stopped) < 12*time.Second {
		durations = append(durations, deliver())
		time.Sleep(50 * time.Millisecond) // the load's pace
	}
	last := seq - 1
	w.signal(a, syscall.SIGCONT)
	resumed := time.Now()

	var slow, total time.Duration
	over := 0
	for i, d := range durations {
		total += d
		if i == 0 {
			if d > 6*time.Second {
				t.Fatalf("first batch after SIGSTOP took %v (GiveUpAfter 5 s)", d)
			}
			continue
		}
		if d > 1500*time.Millisecond {
			t.Fatalf("batch %d took %v with the breaker open (probe budget 1 s)", i, d)
		}
		if d > 200*time.Millisecond {
			over++
			slow += d
		}
	}
	t.Logf("while push-a was stopped (12 s): %d batches, first %v, %d over 200 ms (probes, slow hint writes) took %v together, all batches %v",
		len(durations), durations[0].Round(time.Millisecond), over, slow.Round(time.Millisecond), total.Round(time.Millisecond))
	// push-b got every batch, in order, while push-a was wedged.
	db.await(t, "push-b's device got every batch", 10*time.Second, func(s []int64, _ []string) bool { return len(s) == int(last) })
	db.mu.Lock()
	for i, s := range db.seqs {
		if s != int64(i+1) {
			db.mu.Unlock()
			t.Fatalf("push-b's device got seq %d at %d", s, i)
		}
	}
	db.mu.Unlock()
	// Without the breaker every batch would wait GiveUpAfter: at most 3
	// in 12 s. (Each skipped batch still writes its hint to etcd, so the
	// count depends on etcd's latency: 86-88 on a quiet box, 31 at load 20.)
	if n := int(last - first + 1); n < 10 {
		t.Fatalf("only %d batches routed in 12 s with one node wedged", n)
	}
	// After SIGCONT: push-a reads its hint and tells its device.
	da.await(t, "sync hint on the wedged node's device", 10*time.Second, func(_ []int64, h []string) bool {
		return has(h, presence.ReasonRouteSkipped)
	})
	t.Logf("sync hint %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	// And pushes reach it again once a probe closes the breaker.
	before := len(da.seqs)
	deadline := time.Now().Add(40 * time.Second)
	for {
		deliver()
		da.mu.Lock()
		got := len(da.seqs) > before
		da.mu.Unlock()
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no push reached push-a's device within 40 s of SIGCONT")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pushes reach push-a again %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
}

// TestLeaseLossSyncsDevicesAndReadiness: a push process stopped longer
// than its lease loses its presence entries; a push routed meanwhile
// reaches nobody. After SIGCONT the node re-registers on its own, is ready
// again within 10 s, and its device gets a sync hint (lease_lost) — the
// hint that makes it fetch what it missed — and pushes again.
func TestLeaseLossSyncsDevicesAndReadiness(t *testing.T) {
	w := newPushWorld(t, nil, config.EnvPresenceLeaseTTL+"=3s", config.EnvHeartbeatInterval+"=10s")
	a := w.start("push-l")
	d := w.connect(a, "ul", "ul-phone")
	w.signal(a, syscall.SIGSTOP)
	deadline := time.Now().Add(20 * time.Second)
	for len(w.cache.Sessions("ul")) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stopped node's session did not expire within 20 s (lease 3 s)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.router.Deliver(context.Background(), []route.Item{{Event: msg("c", 1), Users: []string{"ul"}}}); err != nil {
		t.Fatal(err)
	}
	w.signal(a, syscall.SIGCONT)
	resumed := time.Now()
	d.await(t, "lease_lost sync hint", 15*time.Second, func(_ []int64, h []string) bool { return has(h, presence.ReasonLeaseLost) })
	t.Logf("sync hint %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	at := w.awaitReady(a, true, 10*time.Second)
	t.Logf("ready %v after SIGCONT", at.Sub(resumed).Round(time.Millisecond))
	deadline = time.Now().Add(10 * time.Second)
	for len(w.cache.Sessions("ul")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session was not re-registered within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := w.router.Deliver(context.Background(), []route.Item{{Event: msg("c", 2), Users: []string{"ul"}}}); err != nil {
		t.Fatal(err)
	}
	d.await(t, "a push after re-registration", 10*time.Second, func(s []int64, _ []string) bool { return slices.Contains(s, 2) })
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Contains(d.seqs, 1) {
		t.Fatal("seq 1 was pushed although the session was not registered (the test premise broke)")
	}
}

// TestPushReadyAfterEtcdOutage: etcd killed with kill -9 for 15 s; the push
// node's /readyz goes false once its lease can no longer be known alive,
// and true again within 10 s of etcd being back, without a restart.
func TestPushReadyAfterEtcdOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a private etcd and a push process")
	}
	e := testdeps.PrivateEtcd(t)
	if e == nil {
		return
	}
	w := newPushWorld(t, e.Endpoints, config.EnvPresenceLeaseTTL+"=3s", config.EnvHeartbeatInterval+"=10s")
	a := w.start("push-e")
	d := w.connect(a, "ue", "ue-phone")
	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	at := w.awaitReady(a, false, 10*time.Second)
	t.Logf("not ready %v after etcd was killed (lease 3 s)", at.Sub(killed).Round(time.Millisecond))
	outage := 15 * time.Second
	time.Sleep(time.Until(killed.Add(outage))) // the outage's length is the fault, not a wait for an event
	if a.ready() {
		t.Fatal("push node ready while etcd is down")
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	at = w.awaitReady(a, true, 10*time.Second)
	t.Logf("ready %v after etcd was back (outage %v)", at.Sub(back).Round(time.Millisecond), outage)
	d.await(t, "a sync hint after the outage", 15*time.Second, func(_ []int64, h []string) bool { return has(h, presence.ReasonLeaseLost) })
}

// TestPushStartsWhileEtcdDown: a push process started while etcd is down
// stays up and not ready (it used to exit after 30 s), and is ready within
// 10 s of etcd being back.
func TestPushStartsWhileEtcdDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a private etcd and a push process")
	}
	e := testdeps.PrivateEtcd(t)
	if e == nil {
		return
	}
	w := newPushWorld(t, e.Endpoints, config.EnvPresenceLeaseTTL+"=3s")
	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	p := w.launch("push-late")
	down := 35 * time.Second // past the 30 s a registration attempt may take
	deadline := time.Now().Add(down)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("push process exited while etcd was down:\n%s", p.log.String())
		default:
		}
		if p.ready() {
			t.Fatal("push process ready while etcd is down")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	at := w.awaitReady(p, true, 10*time.Second)
	t.Logf("ready %v after etcd was back (down %v since the process started)", at.Sub(back).Round(time.Millisecond), down)
}
