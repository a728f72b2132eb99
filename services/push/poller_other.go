//go:build !linux

package push

// Portable fallback: one reading goroutine per connection.
type poller struct {
	readable func(*conn)
	stopc    chan struct{}
}

func newPoller() (*poller, error) { return &poller{stopc: make(chan struct{})}, nil }

func (p *poller) add(c *conn) error {
	go func() {
		for !c.isDone() {
			p.readable(c)
		}
	}()
	return nil
}

func (p *poller) rearm(*conn)  {}
func (p *poller) remove(*conn) {}

func (p *poller) run(readable func(*conn)) { p.readable = readable; <-p.stopc }

func (p *poller) close() { close(p.stopc) }

const eventDriven = false
