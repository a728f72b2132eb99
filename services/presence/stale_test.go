package presence

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/test/testdeps"
)

// pausableProxy forwards TCP to target; while paused it holds every byte
// (connections stay open: a partition, not a reset).
type pausableProxy struct {
	ln     net.Listener
	paused atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newPausableProxy(t *testing.T, target string) *pausableProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(u, c)
			go p.pipe(c, u)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *pausableProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.paused.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A message pod's cache cut off from etcd (its watch silent) goes stale;
// a device that logs in meanwhile (on node b) may miss pushes the stale pod
// routes by its old view. Once the cache is current again, node b — and
// not node c, whose session predates the partition — gets a stale_route
// hint.
func TestStaleCacheHintsNodesOfNewSessions(t *testing.T) {
	cli, prefix, _ := setup(t)
	px := newPausableProxy(t, testdeps.Etcd(t)[0])
	pcli, err := clientv3.New(clientv3.Config{Endpoints: []string{px.ln.Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pcli.Close() })
	cache := NewCache(pcli, prefix, nil)
	cache.StaleAfter = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cache.Run(ctx)
	if err := cache.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	bHints, cHints := make(chan string, 4), make(chan string, 4)
	b := startRegistrar(t, cli, prefix, "b", 5*time.Second, bHints)
	c := startRegistrar(t, cli, prefix, "c", 5*time.Second, cHints)
	// Logged in a minute before the partition.
	if _, err := c.Login(ctx, Session{UserID: "old", DeviceID: "d", Terminal: "ios", NodeID: "c", Epoch: 1, SinceMs: time.Now().Add(-time.Minute).UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both nodes and the old session in the cache", func() bool {
		_, okB := cache.Node("b")
		_, okC := cache.Node("c")
		return okB && okC && len(cache.Sessions("old")) == 1
	})
	px.paused.Store(true)
	waitFor(t, "the cache to notice it is stale", func() bool { s, _ := cache.Stale(); return s })
	if _, err := b.Login(ctx, Session{UserID: "new", DeviceID: "d", Terminal: "ios", NodeID: "b", Epoch: 2, SinceMs: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if len(cache.Sessions("new")) != 0 {
		t.Fatal("the partitioned cache saw the new session: the test premise broke")
	}
	px.paused.Store(false)
	awaitReason(t, bHints, ReasonStaleRoute, 10*time.Second)
	if s, _ := cache.Stale(); s || len(cache.Sessions("new")) != 1 {
		t.Fatalf("after the hint: stale %v, sessions of new %v", s, cache.Sessions("new"))
	}
	if n := cache.staleNodes.Load(); n != 1 {
		t.Fatalf("%d nodes chosen for hints after the stale period, want 1 (b only)", n)
	}
	waitFor(t, "the hint counted", func() bool { return cache.StaleHints() == 1 })
	select {
	case r := <-cHints:
		t.Fatalf("node c, whose session predates the partition, got a hint (%s)", r)
	default:
	}
}
