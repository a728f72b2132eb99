package push

import (
	"context"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/presence"
)

// maxLogoutWorkers bounds the presence logouts in flight: when thousands of
// connections drop at once (a network blip), their logouts queue as small
// records and reach etcd a few at a time, instead of one goroutine and one
// etcd transaction each, all at once. The queue holds at most one record
// per session the node had, so it is bounded by MaxConnections.
const maxLogoutWorkers = 16

type logoutQueue struct {
	s       *Server
	mu      sync.Mutex
	queue   []presence.Session
	workers int
}

func (q *logoutQueue) add(sess presence.Session) {
	q.mu.Lock()
	q.queue = append(q.queue, sess)
	start := q.workers < maxLogoutWorkers
	if start {
		q.workers++
	}
	q.mu.Unlock()
	if start {
		go q.work()
	}
}

// work logs sessions out until the queue is empty.
func (q *logoutQueue) work() {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.queue = nil // let a burst's backing array go
			q.workers--
			q.mu.Unlock()
			return
		}
		sess := q.queue[0]
		q.queue = q.queue[1:]
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := q.s.pres.Logout(ctx, sess); err != nil {
			q.s.log.Debug("presence logout failed", "err", err)
		}
		cancel()
	}
}
