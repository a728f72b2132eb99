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

	mu    sync.Mutex
	conns map[int32]*conn
	stop  bool
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
func (p *poller) add(c *conn) error {
	fd, err := connFD(c)
	if err != nil {
		return err
	}
	c.fd = fd
	p.mu.Lock()
	p.conns[fd] = c
	p.mu.Unlock()
	if err := p.ctl(unix.EPOLL_CTL_ADD, fd); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		return fmt.Errorf("while adding to epoll: %w", err)
	}
	return nil
}

// ctl adds, re-arms or removes fd; after release it does nothing.
func (p *poller) ctl(op int, fd int32) error {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.epfd < 0 {
		return errors.New("poller closed")
	}
	ev := unix.EpollEvent{Events: pollEvents, Fd: fd}
	return unix.EpollCtl(p.epfd, op, int(fd), &ev)
}

// rearm asks for the next readiness event of c (one-shot mode).
func (p *poller) rearm(c *conn) { _ = p.ctl(unix.EPOLL_CTL_MOD, c.fd) }

// remove stops watching c; call it before closing the socket so a reused
// descriptor number never reaches the wrong connection.
func (p *poller) remove(c *conn) {
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
	}
	p.mu.Unlock()
	_ = p.ctl(unix.EPOLL_CTL_DEL, c.fd)
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
			p.mu.Lock()
			c := p.conns[events[i].Fd]
			p.mu.Unlock()
			if c != nil {
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
