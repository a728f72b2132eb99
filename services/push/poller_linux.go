//go:build linux

package push

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller is the event-driven read side: one epoll instance in one-shot mode
// watches every connection's socket, and a goroutine runs only while a
// connection has a frame to read. An idle connection therefore owns no
// goroutine and no read buffer; see doc.go for the memory budget.
//
// The sockets stay registered with Go's own netpoller too (that is allowed:
// an fd may be in several epoll sets), so reads and writes with deadlines
// keep working once a frame is known to be there.
type poller struct {
	fdMu sync.RWMutex // held for reading around every use of epfd
	epfd int          // -1 once released

	mu     sync.Mutex
	conns  map[int32]*conn
	nextID int32 // registration ids (see add)
	stop   bool
}

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("while creating epoll: %w", err)
	}
	return &poller{epfd: fd, conns: map[int32]*conn{}}, nil
}

func connFD(c *conn) (int32, error) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return 0, errors.New("connection has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int32
	if err := raw.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}

// add starts watching c; readable(c) runs when it has data.
//
// Each registration carries an id beside the descriptor in the event's
// data: a readiness event that epoll_wait returned for a connection torn
// down since, whose descriptor number a new connection already reuses, is
// recognised as stale and dropped. Dispatching it would have started a
// second reader beside the new connection's own (frames interleaved), or
// a reader waiting on an idle connection until it cut it as incomplete.
func (p *poller) add(c *conn) error {
	fd, err := connFD(c)
	if err != nil {
		return err
	}
	c.fd = fd
	p.mu.Lock()
	p.nextID++
	c.pollID = p.nextID
	p.conns[fd] = c
	p.mu.Unlock()
	if err := p.ctl(unix.EPOLL_CTL_ADD, c); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		return fmt.Errorf("while adding to epoll: %w", err)
	}
	return nil
}

// ctl adds, re-arms or removes c's descriptor; after release it does
// nothing.
func (p *poller) ctl(op int, c *conn) error {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.epfd < 0 {
		return errors.New("poller closed")
	}
	ev := unix.EpollEvent{Events: pollEvents, Fd: c.fd, Pad: c.pollID}
	return unix.EpollCtl(p.epfd, op, int(c.fd), &ev)
}

// rearm asks for the next readiness event of c (one-shot mode).
func (p *poller) rearm(c *conn) { _ = p.ctl(unix.EPOLL_CTL_MOD, c) }

// remove stops watching c; call it before closing the socket so a reused
// descriptor number never reaches the wrong connection.
func (p *poller) remove(c *conn) {
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
	}
	p.mu.Unlock()
	_ = p.ctl(unix.EPOLL_CTL_DEL, c)
}

// lookup returns the connection an event is for; nil when the event is
// stale (its connection is gone, whatever now has its descriptor number).
func (p *poller) lookup(ev unix.EpollEvent) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[ev.Fd]; c != nil && c.pollID == ev.Pad {
		return c
	}
	return nil
}

// run dispatches readiness events until close.
func (p *poller) run(readable func(*conn)) {
	events := make([]unix.EpollEvent, 512)
	defer p.release()
	for {
		n, err := unix.EpollWait(p.epfd, events, 500)
		p.mu.Lock()
		stop := p.stop
		p.mu.Unlock()
		if stop {
			return
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for i := 0; i < n; i++ {
			if c := p.lookup(events[i]); c != nil {
				go readable(c)
			}
		}
	}
}

// close makes run return (within its 500 ms wait), which releases epfd.
func (p *poller) close() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
}

// release closes the epoll descriptor; connections torn down later only
// close their sockets (which leaves every epoll set by itself).
func (p *poller) release() {
	p.fdMu.Lock()
	defer p.fdMu.Unlock()
	if p.epfd >= 0 {
		_ = unix.Close(p.epfd)
		p.epfd = -1
	}
}

const eventDriven = true
