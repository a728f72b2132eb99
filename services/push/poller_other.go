//go:build !linux

package push

import "errors"

// Portable fallback: no event-driven poller; startReading gives every
// connection a reading goroutine of its own (reader.go).
type poller struct{ stopc chan struct{} }

func newPoller() (*poller, error) { return &poller{stopc: make(chan struct{})}, nil }

func (p *poller) add(*conn) error { return errors.New("no event-driven poller on this platform") }
func (p *poller) rearm(*conn)     {}
func (p *poller) remove(*conn)    {}

func (p *poller) run(func(*conn)) { <-p.stopc }

func (p *poller) close() { close(p.stopc) }

const eventDriven = false
