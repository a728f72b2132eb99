package push

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

const (
	stateLogin  = iota // upgraded, waiting for the login frame
	stateActive        // logged in and registered
)

// conn is one device connection. Its size is what an idle connection costs
// (with the socket's kernel buffers, which are not process memory): no
// goroutine, no buffer, an empty queue.
type conn struct {
	srv    *Server
	nc     net.Conn
	fd     int32
	pollID int32 // the poller's id of this registration (stale events)
	// blocking: read by a goroutine of its own (reader.go), not the
	// poller. Set before reading starts, then read-only.
	blocking bool

	// Set once at login, then read-only.
	sess presence.Session

	created  int64        // unix nanos
	lastRead atomic.Int64 // unix nanos of the last frame
	expires  atomic.Int64 // unix nanos: the session's token expiry (0 before login)
	state    atomic.Int32
	done     atomic.Bool
	inflight atomic.Int32 // forwarded sends awaiting the message tier

	// Token bucket against floods; only the (single) reading goroutine
	// touches it.
	tokens   float32
	tokensAt int64

	mu      sync.Mutex
	queue   [][]byte // encoded frames waiting for the writer
	writing bool
	closing bool
}

func (c *conn) isDone() bool { return c.done.Load() }

// enqueue queues an encoded frame; false when the connection is closing or
// was just cut off as a slow consumer.
func (c *conn) enqueue(frame []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.srv.opt.SendQueue {
		c.mu.Unlock()
		c.srv.met.slowConsumers.Inc()
		c.fail(protocol.ErrSlowConsumer, protocol.ClosePolicy, "send queue full: the client does not read fast enough")
		return false
	}
	c.queue = append(c.queue, frame)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
	return true
}

// enqueueActive queues frame only once the session is active (deliveries
// that race the login are left to the device's post-login sync).
func (c *conn) enqueueActive(frame []byte, epoch int64) bool {
	if c.state.Load() != stateActive || c.sess.Epoch != epoch {
		return false
	}
	return c.enqueue(frame)
}

// fail sends an error frame and a close frame, then closes.
func (c *conn) fail(code string, status ws.StatusCode, msg string) {
	c.srv.met.closedWith.WithLabelValues(code).Inc()
	c.closeWith(encodeServerFrame(&protocol.ServerFrame{
		Type: protocol.FrameError, Error: &protocol.Error{Code: code, Message: msg},
	}), status, code)
}

// closeWith queues last (if any) and a close frame, then closes.
func (c *conn) closeWith(last []byte, status ws.StatusCode, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	if last != nil {
		c.queue = append(c.queue, last)
	}
	c.queue = append(c.queue, ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(status, reason))))
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// writeLoop runs while frames are queued, writing them with writev.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		closing := c.closing
		if len(q) == 0 {
			c.writing = false
			c.mu.Unlock()
			if closing {
				c.linger()
			}
			return
		}
		c.mu.Unlock()
		timeout := c.srv.opt.WriteTimeout
		if closing {
			timeout = min(timeout, 2*time.Second)
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		bufs := net.Buffers(q)
		if _, err := bufs.WriteTo(c.nc); err != nil {
			c.mu.Lock()
			c.closing, c.queue, c.writing = true, nil, false
			c.mu.Unlock()
			if !closing {
				c.srv.met.closedWith.WithLabelValues("write_error").Inc()
			}
			c.teardown()
			return
		}
		c.srv.met.framesOut.Add(float64(len(q)))
	}
}

// teardown releases the connection once.
func (c *conn) teardown() {
	if !c.done.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	if !c.blocking {
		c.srv.poll.remove(c)
	}
	_ = c.nc.Close()
	c.srv.forget(c)
}

// lingerTimeout bounds how long a closed connection keeps discarding what
// its peer still sends after the close frame went out.
const lingerTimeout = time.Second

// linger half-closes the socket once the close frame is written and leaves
// the reader discarding input until the peer closes too, or lingerTimeout.
// Closing at once while the peer's frames sit unread makes the kernel answer
// with a reset, and a reset destroys what the peer has not read yet: often
// the very error frame that says why it was cut off (a flooding client
// always has frames in flight).
func (c *conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		c.teardown()
		return
	}
	time.AfterFunc(lingerTimeout, c.teardown)
}

// readable reads and handles one frame, or discards input once the
// connection is closing; it runs when the poller saw data.
func (c *conn) readable() {
	if c.isDone() {
		return
	}
	if c.isClosing() {
		c.discard()
	} else {
		c.readFrame()
	}
	// Keep reading after a close too: discard drains the peer (see linger).
	if !c.isDone() && !c.blocking {
		c.srv.poll.rearm(c)
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// discardBufs holds scratch space for input nobody reads.
var discardBufs = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}

// discard reads and drops one chunk of input; the end of input (the peer
// closed) or an error finishes the connection.
func (c *conn) discard() {
	buf := discardBufs.Get().(*[]byte)
	defer discardBufs.Put(buf)
	_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	if _, err := c.nc.Read(*buf); err != nil {
		c.teardown()
	}
}

// readFrame reads one frame; false when the connection is finished.
func (c *conn) readFrame() bool {
	s := c.srv
	if !c.blocking {
		// Data is there: a frame must arrive whole within the timeout.
		_ = c.nc.SetReadDeadline(time.Now().Add(s.opt.FrameReadTimeout))
	} else {
		// Waiting for the next frame (the sweep enforces the idle and
		// login timeouts sooner; this only bounds a stuck read).
		_ = c.nc.SetReadDeadline(time.Now().Add(s.idleTimeout()))
	}
	h, err := ws.ReadHeader(c.nc)
	if err != nil {
		c.dropped(err)
		return false
	}
	if c.blocking {
		// The frame has begun: the rest must arrive within the timeout.
		_ = c.nc.SetReadDeadline(time.Now().Add(s.opt.FrameReadTimeout))
	}
	if h.OpCode.IsControl() && (h.Length > maxControlPayload || !h.Fin) {
		// RFC 6455 5.5: a control frame is never fragmented and carries at
		// most 125 bytes; a ping is not echoed back beyond that.
		c.fail(protocol.ErrBadJSON, ws.StatusProtocolError, "control frames must be unfragmented and at most 125 bytes")
		return false
	}
	if h.Length > protocol.MaxFrameBytes {
		c.fail(protocol.ErrTooLarge, protocol.CloseTooLarge, "frame over the limit")
		return false
	}
	if !h.Masked || h.Rsv != 0 {
		c.fail(protocol.ErrBadJSON, ws.StatusProtocolError, "client frames must be masked and without extensions")
		return false
	}
	if !h.Fin || h.OpCode == ws.OpContinuation {
		c.fail(protocol.ErrBadJSON, protocol.ClosePolicy, "fragmented frames are not supported")
		return false
	}
	payload, err := readPayload(c.nc, h.Length)
	if err != nil {
		c.dropped(err)
		return false
	}
	ws.Cipher(payload, h.Mask, 0)
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	s.met.framesIn.Inc()
	if !c.allow(now) {
		c.fail(protocol.ErrRateLimited, protocol.ClosePolicy, "too many frames")
		return false
	}
	switch h.OpCode {
	case ws.OpPing:
		c.enqueue(ws.MustCompileFrame(ws.NewPongFrame(payload)))
	case ws.OpPong:
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(payload)
		switch {
		case len(payload) == 0:
			code = ws.StatusNormalClosure
		case len(payload) == 1 || !validCloseCode(code):
			c.fail(protocol.ErrBadJSON, ws.StatusProtocolError, "invalid close frame status code")
			return false
		case !utf8.ValidString(reason):
			c.fail(protocol.ErrInvalidUTF8, protocol.CloseInvalidData, "close reason is not valid UTF-8")
			return false
		}
		c.closeWith(nil, code, "")
		return false
	case ws.OpText:
		if !utf8.Valid(payload) {
			c.fail(protocol.ErrInvalidUTF8, protocol.CloseInvalidData, "frame is not valid UTF-8")
			return false
		}
		return c.handleText(payload)
	case ws.OpBinary:
		c.fail(protocol.ErrBadJSON, protocol.ClosePolicy, "only text frames are accepted")
		return false
	default: // reserved opcodes
		c.fail(protocol.ErrBadJSON, ws.StatusProtocolError, "unknown opcode")
		return false
	}
	return true
}

// maxControlPayload is RFC 6455's bound on a control frame's payload.
const maxControlPayload = 125

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 7.4 and the IANA registry): 1000-1003, 1007-1014, 3000-4999.
// 1004-1006 and 1015 are reserved, never sent; the rest is unassigned.
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// readChunk is the most a frame's payload buffer is allocated ahead of the
// bytes that arrived.
const readChunk = 4 << 10

// readPayload reads n payload bytes. Its buffer grows with the bytes that
// arrive rather than with the length the header announced: a client that
// announces 64 KiB and trickles holds 4 KiB of the node's memory, not 64 KiB,
// for as long as FrameReadTimeout lets it (times every connection the node
// holds, that was gigabytes).
func readPayload(r io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(n, 2*int64(cap(buf))))-len(buf))
		}
		m, err := r.Read(buf[len(buf):min(int64(cap(buf)), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if int64(len(buf)) == n {
				break
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// dropped handles a read error: a peer that went away, or a frame that did
// not arrive in time.
func (c *conn) dropped(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.fail(protocol.ErrBadJSON, protocol.ClosePolicy, "incomplete frame")
		return
	}
	c.srv.met.closedWith.WithLabelValues("peer_closed").Inc()
	c.teardown()
}

// allow spends one token of the connection's flood budget.
func (c *conn) allow(now int64) bool {
	rate, burst := float32(c.srv.opt.FrameRate), float32(c.srv.opt.FrameBurst)
	if c.tokensAt == 0 {
		c.tokens = burst
	} else {
		c.tokens = min(burst, c.tokens+float32(now-c.tokensAt)/1e9*rate)
	}
	c.tokensAt = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// decodeClientFrame parses one text frame: exactly one JSON object, no
// unknown fields. On error it returns the frame error code to close with.
func decodeClientFrame(payload []byte) (protocol.ClientFrame, string, error) {
	var f protocol.ClientFrame
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		code := protocol.ErrBadJSON
		if bytes.Contains([]byte(err.Error()), []byte("unknown field")) {
			code = protocol.ErrUnknownField
		}
		return f, code, err
	}
	if dec.More() {
		return f, protocol.ErrBadJSON, errors.New("one JSON object per frame")
	}
	return f, "", nil
}

func (c *conn) handleText(payload []byte) bool {
	f, code, err := decodeClientFrame(payload)
	if err != nil {
		c.fail(code, protocol.ClosePolicy, err.Error())
		return false
	}
	if c.state.Load() == stateLogin {
		if f.Type != protocol.FrameLogin {
			c.fail(protocol.ErrUnauthenticated, protocol.ClosePolicy, "the first frame must be login")
			return false
		}
		return c.srv.login(c, &f)
	}
	switch f.Type {
	case protocol.FramePing:
		c.enqueue(pongFrame)
	case protocol.FrameAck:
		if len(f.Acks) == 0 || len(f.Acks) > protocol.MaxAcksPerFrame {
			c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "acks must hold 1..256 items")
			return false
		}
		acks := f.Acks[:0:0]
		for _, a := range f.Acks {
			if a.ConvID == "" || len(a.ConvID) > 256 || a.Seq < 0 || a.Seq > model.MaxSeq {
				c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "ack needs conv_id and a seq in range")
				return false
			}
			if model.IsGroupConv(a.ConvID) {
				continue // groups have no delivered receipts (docs/protocol.md)
			}
			// Checked here so one bad ack can never make the message tier
			// refuse a coalesced batch carrying other devices' receipts.
			if _, ok := model.Peer(a.ConvID, c.sess.UserID); !ok {
				c.fail(protocol.ErrForbidden, protocol.ClosePolicy, "ack for a conversation you are not in")
				return false
			}
			acks = append(acks, a)
		}
		if len(acks) > 0 {
			c.srv.acks.add(c.sess.UserID, c.sess.DeviceID, acks)
		}
	case protocol.FrameSend:
		if f.ID == "" || len(f.ID) > 64 || len(f.Send) == 0 {
			c.fail(protocol.ErrMissingField, protocol.ClosePolicy, "send needs id (1..64 bytes) and send")
			return false
		}
		c.srv.forwardSend(c, f.ID, f.Send)
	case protocol.FrameRefresh:
		return c.srv.refresh(c, f.Token)
	case protocol.FrameLogin:
		c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "already logged in")
		return false
	default:
		c.fail(protocol.ErrInvalidField, protocol.ClosePolicy, "unknown frame type")
		return false
	}
	return true
}

var pongFrame = encodeServerFrame(&protocol.ServerFrame{Type: protocol.FramePong})

// encodeServerFrame returns f as a complete WebSocket text frame. Server
// frames are unmasked, so one encoding serves every target of a delivery.
func encodeServerFrame(f *protocol.ServerFrame) []byte {
	p, _ := json.Marshal(f)
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))}
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(p))
	_ = ws.WriteHeader(&b, h)
	b.Write(p)
	return b.Bytes()
}
