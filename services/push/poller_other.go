//go:build !linux

package push

// Portable fallback: one reading goroutine per connection (no epoll).
type poller struct {
	readable func(*conn)
	ready    chan struct{} // closed once run has set readable
	stopc    chan struct{}
}

func newPoller() (*poller, error) {
	return &poller{ready: make(chan struct{}), stopc: make(chan struct{})}, nil
}

func (p *poller) add(c *conn) error {
	go func() {
		<-p.ready
		for !c.isDone() {
			p.readable(c)
		}
	}()
	return nil
}

func (p *poller) rearm(*conn)  {}
func (p *poller) remove(*conn) {}

func (p *poller) run(readable func(*conn)) {
	p.readable = readable
	close(p.ready)
	<-p.stopc
}

func (p *poller) close() { close(p.stopc) }

const eventDriven = false
