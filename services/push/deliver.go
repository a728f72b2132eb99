package push

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

// maxDeliveryBody bounds one delivery call's body (routers split bigger
// batches).
const maxDeliveryBody = protocol.MaxDeliveryBytes

// InternalHandler serves the tier-to-tier endpoints: protocol.DeliveryPath.
func (s *Server) InternalHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.DeliveryPath, s.handleDeliver)
	return mux
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(protocol.Error{Code: code, Message: msg})
}

// handleDeliver queues each delivery's event on the targets' connections, in
// batch order. A target not connected here, or connected with another epoch
// (a newer login), is counted as missed: the device syncs.
func (s *Server) handleDeliver(w http.ResponseWriter, r *http.Request) {
	tok, ok := auth.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		writeErr(w, http.StatusUnauthorized, protocol.ErrUnauthenticated, "internal token required")
		return
	}
	if _, err := s.opt.Internal.Verify(tok); err != nil {
		writeErr(w, http.StatusUnauthorized, protocol.ErrUnauthenticated, "bad internal token")
		return
	}
	var b protocol.DeliveryBatch
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDeliveryBody))
	if err := dec.Decode(&b); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, "delivery batch too large")
			return
		}
		writeErr(w, http.StatusBadRequest, protocol.ErrBadJSON, err.Error())
		return
	}
	if len(b.Deliveries) > protocol.MaxDeliveryBatch {
		writeErr(w, http.StatusRequestEntityTooLarge, protocol.ErrTooLarge, "more than MaxDeliveryBatch deliveries")
		return
	}
	res := s.Deliver(&b)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// Deliver queues a batch on the local connections (see handleDeliver).
func (s *Server) Deliver(b *protocol.DeliveryBatch) protocol.DeliveryResult {
	var res protocol.DeliveryResult
	for i := range b.Deliveries {
		d := &b.Deliveries[i]
		var frame []byte
		for _, t := range d.Targets {
			c := s.lookup(t.UserID, t.DeviceID)
			if c == nil {
				res.Missed++
				continue
			}
			if frame == nil {
				ev := d.Event
				frame = encodeServerFrame(&protocol.ServerFrame{Type: protocol.FrameEvent, Event: &ev})
			}
			if c.enqueueActive(frame, t.Epoch) {
				res.Queued++
			} else {
				res.Missed++
			}
		}
	}
	s.met.delivered.Add(float64(res.Queued))
	s.met.missed.Add(float64(res.Missed))
	return res
}
