package integration

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/test/testdeps"
)

func TestEtcdLeaseExpiryAndWatch(t *testing.T) {
	eps := testdeps.Etcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := "/" + testdeps.Unique("it") + "/"
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), prefix, clientv3.WithPrefix()) })

	if _, err := cli.Put(ctx, prefix+"plain", "v1"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, prefix+"plain")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("get: %v %v", resp, err)
	}

	watch := cli.Watch(ctx, prefix+"leased", clientv3.WithRev(resp.Header.Revision+1))
	lease, err := cli.Grant(ctx, 1) // 1s TTL, never kept alive
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if _, err := cli.Put(ctx, prefix+"leased", "alive", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("put leased: %v", err)
	}
	var events []mvccpb.Event_EventType
	for len(events) < 2 {
		select {
		case wr := <-watch:
			if err := wr.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			for _, ev := range wr.Events {
				events = append(events, ev.Type)
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %v before the deadline; want PUT then DELETE on lease expiry", events)
		}
	}
	if events[0] != mvccpb.PUT || events[1] != mvccpb.DELETE {
		t.Fatalf("events %v, want [PUT DELETE]", events)
	}
	got, err := cli.Get(ctx, prefix+"leased")
	if err != nil || len(got.Kvs) != 0 {
		t.Fatalf("leased key still present after expiry: %v %v", got.Kvs, err)
	}
}
