package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/protocol"
)

// acker coalesces client ACK frames into delivered batches for the message
// tier: per (conversation, user, device) only the highest seq is kept, and
// a batch is posted every flushEvery or when maxPending keys are waiting.
// Delivered receipts are best effort: a batch the message tier keeps
// refusing is dropped after a few tries (and counted), never buffered
// without bound. While a flush waits for a slow message tier, at most
// ackMaxHeld keys wait behind it (acks for more are dropped and counted),
// and every flush ends within ackFlushTimeout; Close cuts a flush under way
// short and gives the last one ackFinalTimeout.
type acker struct {
	s       *Server
	mu      sync.Mutex
	pending map[ackKey]int64
	kick    chan struct{}
}

type ackKey struct{ conv, user, device string }

const (
	ackFlushEvery = 50 * time.Millisecond
	ackMaxPending = 2000
	ackMaxBatch   = 1000
	ackMaxHeld    = 50000 // keys waiting while a flush is under way

	ackFlushTimeout = 10 * time.Second
	ackFinalTimeout = 2 * time.Second
)

func newAcker(s *Server) *acker {
	return &acker{s: s, pending: map[ackKey]int64{}, kick: make(chan struct{}, 1)}
}

func (a *acker) add(user, device string, items []protocol.AckItem) {
	dropped := 0
	a.mu.Lock()
	for _, it := range items {
		k := ackKey{it.ConvID, user, device}
		cur, ok := a.pending[k]
		switch {
		case !ok && len(a.pending) >= ackMaxHeld:
			dropped++
		case !ok || it.Seq > cur:
			a.pending[k] = it.Seq
		}
	}
	full := len(a.pending) >= ackMaxPending
	a.mu.Unlock()
	if dropped > 0 {
		a.s.met.acksDropped.Add(float64(dropped))
	}
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

func (a *acker) run(stop <-chan struct{}) {
	t := time.NewTicker(ackFlushEvery)
	defer t.Stop()
	// A flush under way when stop comes is cut short (its acks are
	// dropped): Close must not wait for a stuck message tier.
	live, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-live.Done():
		}
	}()
	for {
		select {
		case <-stop:
			a.flushWithin(context.Background(), ackFinalTimeout)
			return
		case <-t.C:
		case <-a.kick:
		}
		if live.Err() != nil {
			continue // stopping: the final flush takes the pending acks
		}
		a.flushWithin(live, ackFlushTimeout)
	}
}

func (a *acker) flushWithin(parent context.Context, d time.Duration) {
	ctx, cancel := context.WithTimeout(parent, d)
	defer cancel()
	a.flush(ctx)
}

func (a *acker) flush(ctx context.Context) {
	a.mu.Lock()
	if len(a.pending) == 0 {
		a.mu.Unlock()
		return
	}
	p := a.pending
	a.pending = map[ackKey]int64{}
	a.mu.Unlock()
	batch := make([]protocol.DeliveredAck, 0, len(p))
	for k, seq := range p {
		batch = append(batch, protocol.DeliveredAck{ConvID: k.conv, UserID: k.user, DeviceID: k.device, Seq: seq})
	}
	for len(batch) > 0 {
		n := min(len(batch), ackMaxBatch)
		if err := a.post(ctx, batch[:n]); err != nil {
			a.s.met.acksDropped.Add(float64(n))
			a.s.log.Warn("delivered acks dropped", "count", n, "err", err)
		} else {
			a.s.met.acksForwarded.Add(float64(n))
		}
		batch = batch[n:]
	}
}

func (a *acker) post(ctx context.Context, acks []protocol.DeliveredAck) error {
	body, _ := json.Marshal(protocol.DeliveredBatch{Acks: acks})
	var last error
	for try := 0; try < 3; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("while posting delivered acks: %w (last: %v)", ctx.Err(), last)
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		status, err := a.s.callMessage(ctx, protocol.DeliveredPath, body, nil)
		if err == nil && status/100 == 2 {
			return nil
		}
		if err == nil {
			last = fmt.Errorf("message tier answered %d", status)
			if status/100 == 4 {
				return last // will not get better
			}
		} else {
			last = err
		}
	}
	return last
}

// callMessage POSTs body to the message tier with an internal token; extra
// headers are added. It returns the status and fills out (if non-nil) with
// the response body (at most 1 MiB).
func (s *Server) callMessage(ctx context.Context, path string, body []byte, hdr map[string]string, out ...*[]byte) (int, error) {
	tok, err := s.opt.InternalTokens.Token()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opt.MessageURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("while calling the message tier %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("while reading the message tier's answer: %w", err)
	}
	if len(out) > 0 && out[0] != nil {
		*out[0] = b
	}
	return resp.StatusCode, nil
}
