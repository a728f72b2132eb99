package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// balancer stands for the message tier's Service: a TCP proxy in this
// process that spreads connections round-robin over the message processes
// whose /readyz last answered 200 (all of them when none did), and tries
// the next one when a dial fails (a killed process refuses at once). Sends,
// syncs and unread pulls of the devices, and the push nodes' forwarded
// acks, all go through it.
type balancer struct {
	ln   net.Listener
	addr string

	mu       sync.Mutex
	backends []*proc
	ready    map[string]bool
	next     atomic.Uint64

	acceptErrs atomic.Int64
}

func newBalancer() (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, addr: ln.Addr().String(), ready: map[string]bool{}}
	go b.serve()
	return b, nil
}

func (b *balancer) add(p *proc) {
	b.mu.Lock()
	b.backends = append(b.backends, p)
	b.mu.Unlock()
}

func (b *balancer) setReady(name string, ok bool) {
	b.mu.Lock()
	b.ready[name] = ok
	b.mu.Unlock()
}

func (b *balancer) close() { _ = b.ln.Close() }

// candidates lists the backends to try in order: ready ones first.
func (b *balancer) candidates() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backends)
	start := int(b.next.Add(1)) % n
	var ready, rest []string
	for i := 0; i < n; i++ {
		p := b.backends[(start+i)%n]
		if b.ready[p.name] {
			ready = append(ready, p.httpAddr)
		} else {
			rest = append(rest, p.httpAddr)
		}
	}
	return append(ready, rest...)
}

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// EMFILE and the like: the listener stays, the accept is
			// tried again (returning here would leave every later
			// connection in the backlog forever).
			if b.acceptErrs.Add(1)%100 == 1 {
				logf("balancer: accept: %v (%d so far)", err, b.acceptErrs.Load())
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go b.proxy(c)
	}
}

func (b *balancer) proxy(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for _, a := range b.candidates() {
		var err error
		if up, err = net.DialTimeout("tcp", a, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		_ = t.CloseWrite()
	}
}
