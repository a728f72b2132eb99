package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/webhook/wire"
)

// Backoff defaults between delivery attempts: BackoffMin doubling up to
// BackoffMax, with ±20% jitter. With the default 12 attempts an event is
// retried for about three minutes before it is dead-lettered.
const (
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
)

// post delivers ev once: nil on a 2xx answer; errPermanent (wrapped) on a
// 4xx other than 408 and 429; another error otherwise.
func (d *Dispatcher) post(ctx context.Context, ev *wire.Event, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, d.Hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Hook.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	sign(req, d.Secret, ev.Type, body, d.now())
	req.Header.Set(wire.HeaderIdempotencyKey, ev.ID)
	req.Header.Set(wire.HeaderAttempt, strconv.Itoa(attempt))
	t0 := time.Now()
	resp, err := d.hc.Do(req)
	mDeliverySeconds.WithLabelValues(ev.Type).Observe(time.Since(t0).Seconds())
	if err != nil {
		return fmt.Errorf("while posting %s: %w", ev.Type, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return nil
	case s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s answered %d", errPermanent, ev.Type, s)
	default:
		return fmt.Errorf("%s answered %d", ev.Type, s)
	}
}

// deliver sends ev until it is acknowledged or dead-lettered. It returns
// false only when ctx ended first (the event is then not done: its record
// is not marked and is consumed again).
func (d *Dispatcher) deliver(ctx context.Context, ev *wire.Event) bool {
	body, err := json.Marshal(ev)
	if err != nil { // cannot happen for these types
		d.Log.Error("webhook event not encodable", "id", ev.ID, "err", err)
		return true
	}
	for attempt := 1; ; attempt++ {
		err := d.post(ctx, ev, body, attempt)
		if err == nil {
			mDeliveries.WithLabelValues(ev.Type, "ok").Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if isPermanent(err) || attempt >= d.Hook.MaxAttempts {
			return d.deadLetter(ctx, ev, body, attempt, err)
		}
		mDeliveries.WithLabelValues(ev.Type, "retry").Inc()
		d.Log.Debug("webhook delivery failed; retrying", "id", ev.ID, "attempt", attempt, "err", err)
		if !sleep(ctx, d.backoff(attempt)) {
			return false
		}
	}
}

// DeadLetter is a record of the webhook dead-letter topic (key: the
// event's ID).
type DeadLetter struct {
	Event    json.RawMessage `json:"event"`
	Error    string          `json:"error"`
	Attempts int             `json:"attempts"`
	AtMs     int64           `json:"at_ms"`
}

// deadLetter produces ev to the dead-letter topic, retrying the produce
// until it is acknowledged or ctx ends.
func (d *Dispatcher) deadLetter(ctx context.Context, ev *wire.Event, body []byte, attempts int, cause error) bool {
	v, _ := json.Marshal(DeadLetter{Event: body, Error: cause.Error(), Attempts: attempts, AtMs: d.now().UnixMilli()})
	for i := 1; ; i++ {
		_, _, err := d.dlq.Produce(ev.ID, v)
		if err == nil {
			mDeliveries.WithLabelValues(ev.Type, "dead_letter").Inc()
			d.Log.Warn("webhook event dead-lettered", "id", ev.ID, "attempts", attempts, "err", cause)
			return true
		}
		d.Log.Warn("webhook dead-letter produce failed; retrying", "id", ev.ID, "err", err)
		if !sleep(ctx, d.backoff(i)) {
			return false
		}
	}
}

func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.BackoffMin
	for i := 1; i < attempt && b < d.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.BackoffMax)
	return time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
}

// deliverAll delivers evs with at most d.Concurrency at once; false when
// ctx ended before every one was done.
func (d *Dispatcher) deliverAll(ctx context.Context, evs []*wire.Event) bool {
	sem := make(chan struct{}, d.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for _, ev := range evs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return false
		}
		wg.Add(1)
		mInFlight.Inc()
		go func() {
			defer func() { <-sem; mInFlight.Dec(); wg.Done() }()
			if !d.deliver(ctx, ev) {
				mu.Lock()
				ok = false
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok && ctx.Err() == nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
