package push

import (
	"time"

	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// Resync tells every logged-in device of this node to sync: pushes to it
// may have been dropped (reason: presence.ReasonRouteSkipped when a router
// skipped a batch for this node, presence.ReasonLeaseLost after the node
// re-registered). It is the presence Registrar's OnResync hook. Each
// device syncs at a random moment within SyncSpread (the frame's
// sync_within_ms), so a node's devices do not all sync at once.
//
// After a re-registration it tells them once more ResyncAfter later:
// message pods learn of the rewritten sessions through their watch, and an
// event routed before that reached nobody, yet may be stored after the
// first sync's read — the window the post-login resync closes for a login.
func (s *Server) Resync(reason string) {
	n := s.resyncNow(reason)
	s.log.Info("told devices to sync", "reason", reason, "devices", n)
	if reason == presence.ReasonLeaseLost {
		t := time.NewTimer(s.opt.ResyncAfter)
		go func() {
			defer t.Stop()
			select {
			case <-s.stop:
			case <-t.C:
				s.resyncNow(reason)
			}
		}()
	}
}

// resyncNow queues a sync frame on every active connection and returns
// how many got it. A full queue cuts the device off (slow_consumer): it
// reconnects and syncs anyway.
func (s *Server) resyncNow(reason string) int {
	frame := encodeServerFrame(&protocol.ServerFrame{Type: protocol.FrameSync, Reason: reason,
		SyncWithinMs: s.opt.SyncSpread.Milliseconds()})
	n := 0
	for _, c := range s.snapshot() {
		if c.state.Load() == stateActive && c.enqueue(frame) {
			n++
		}
	}
	s.met.syncHints.WithLabelValues(reason).Add(float64(n))
	return n
}
