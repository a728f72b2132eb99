package fault

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/test/testdeps"
)

// TestEtcdKillLosesNothingAcked: etcd as hack/deps.sh runs it
// (--unsafe-no-fsync: the WAL and the database are written but not
// fsynced) is killed with kill -9 while puts are acknowledged; after
// hack/deps.sh start every acknowledged put is there. A process kill keeps
// the page cache, so only a power loss or a kernel crash could lose
// unsynced writes (and presence, all etcd holds here, is rebuilt by the
// push nodes' re-registration anyway).
func TestEtcdKillLosesNothingAcked(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a private etcd")
	}
	e := testdeps.PrivateEtcd(t)
	if e == nil {
		return
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const writers = 8
	acked := make([][]string, writers)
	var total atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("/fault/%d/%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := cli.Put(ctx, k, "v")
				cancel()
				if err != nil {
					return
				}
				acked[w] = append(acked[w], k)
				total.Add(1)
			}
		}()
	}
	t0 := time.Now()
	for time.Since(t0) < time.Second || total.Load() < 1000 {
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("only %d puts acknowledged in 60 s", total.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writers still blocked 20 s after the kill")
	}
	t.Logf("%d puts acknowledged in %v before the kill", total.Load(), time.Since(t0).Round(time.Millisecond))
	if err := e.Start(); err != nil {
		t.Fatalf("hack/deps.sh start right after kill -9: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/fault/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = true
	}
	lost, n := 0, 0
	for _, ks := range acked {
		for _, k := range ks {
			n++
			if !have[k] {
				lost++
			}
		}
	}
	t.Logf("%d acknowledged puts checked, %d lost", n, lost)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged puts lost by kill -9", lost, n)
	}
}
