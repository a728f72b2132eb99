package push

import (
	"context"
	"encoding/json"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// forwardSend passes a send frame to the message tier's send endpoint as the
// connection's user and device (internal token + X-IM-Act-As/X-IM-Device),
// and answers with a send_result frame carrying the API's status and body:
// the same idempotency (client_msg_id) and the same ack meaning as the HTTP
// API. At most MaxInflightSends per connection wait for an answer; more are
// refused with rate_limited (the connection stays open). At most
// MaxForwarding wait on the whole node (a stalled message tier must not
// pile up a goroutine and a body per send of every connection); more are
// answered 503 unavailable at once: retry with the same client_msg_id.
func (s *Server) forwardSend(c *conn, id string, send json.RawMessage) {
	if c.inflight.Add(1) > s.opt.MaxInflightSends {
		c.inflight.Add(-1)
		c.enqueue(sendRefusal(id, 429, protocol.ErrRateLimited, "too many sends awaiting an answer"))
		return
	}
	if s.forwarding.Add(1) > s.opt.MaxForwarding {
		s.forwarding.Add(-1)
		c.inflight.Add(-1)
		s.met.sends.WithLabelValues("5xx").Inc()
		c.enqueue(sendRefusal(id, 503, protocol.ErrUnavailable, "push node busy forwarding; retry with the same client_msg_id"))
		return
	}
	body := append([]byte(nil), send...)
	go func() {
		defer s.forwarding.Add(-1)
		defer c.inflight.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var out []byte
		status, err := s.callMessage(ctx, s.opt.SendPath, body, map[string]string{
			protocol.HeaderActAs:  c.sess.UserID,
			protocol.HeaderDevice: c.sess.DeviceID,
		}, &out)
		f := protocol.ServerFrame{Type: protocol.FrameSendResult, ID: id, Status: status}
		switch {
		case err != nil:
			f.Status = 503
			f.Error = &protocol.Error{Code: protocol.ErrUnavailable, Message: "message tier unreachable; retry with the same client_msg_id"}
		case status/100 == 2:
			if json.Valid(out) {
				f.Result = out
			}
		default:
			var e protocol.Error
			if json.Unmarshal(out, &e) != nil || e.Code == "" {
				e = protocol.Error{Code: protocol.ErrInternal, Message: "message tier answered " + string(out)}
				if status >= 500 {
					e.Code = protocol.ErrUnavailable
				}
			}
			f.Error = &e
		}
		s.met.sends.WithLabelValues(statusClass(f.Status)).Inc()
		c.enqueue(encodeServerFrame(&f))
	}()
}

func sendRefusal(id string, status int, code, msg string) []byte {
	return encodeServerFrame(&protocol.ServerFrame{
		Type: protocol.FrameSendResult, ID: id, Status: status,
		Error: &protocol.Error{Code: code, Message: msg},
	})
}

func statusClass(st int) string {
	switch st / 100 {
	case 2:
		return "2xx"
	case 4:
		return "4xx"
	default:
		return "5xx"
	}
}
