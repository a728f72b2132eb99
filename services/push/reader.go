package push

import (
	"crypto/tls"
	"syscall"
)

// startReading hands c to the reader that suits it.
//
// The poller (poller_linux.go) waits for readiness of the raw socket, which
// is only right when the socket is where the bytes are. A *tls.Conn
// decrypts whole records into a buffer of its own: a record may carry
// several frames, so after one frame is read the next can sit decrypted in
// that buffer while the socket has nothing to read, and epoll would never
// wake the connection for it. Such connections, and every connection where
// there is no poller (poller_other.go), get a goroutine that blocks in Read
// instead, trading memory for correctness: see doc.go, "Memory per idle
// connection".
func (s *Server) startReading(c *conn) error {
	_, isTLS := c.nc.(*tls.Conn)
	_, raw := c.nc.(syscall.Conn)
	if eventDriven && raw && !isTLS {
		return s.poll.add(c)
	}
	c.blocking = true
	s.met.blockingReaders.Inc()
	go func() {
		defer s.met.blockingReaders.Dec()
		for !c.isDone() {
			c.readable()
		}
	}()
	return nil
}
