package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// /readyz answers 503 only for a failing gating check, and names every
// check's state either way.
func TestReadinessGatesOnlyOnGatingChecks(t *testing.T) {
	var kafkaErr, storeErr, presenceErr error
	var routed atomic.Bool
	r := &readiness{}
	r.add("kafka", func() error { return kafkaErr })
	r.report("cassandra", "reads answer 503; sends are taken", func() error { return storeErr })
	r.report("presence", "reported, not gating", func() error { return presenceErr })
	r.addFlag("routing", true, routed.Load)
	probe := func() (int, string) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // one round of probes, then run returns
		r.run(ctx)
		w := httptest.NewRecorder()
		r.serve(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code, w.Body.String()
	}
	tests := []struct {
		name                   string
		kafka, store, presence error
		routed                 bool
		want                   int
		wantInBody             string
	}{
		{"all well", nil, nil, nil, true, 200, "cassandra: ok"},
		{"store down: still ready for sends", nil, errors.New("no hosts"), nil, true, 200, "cassandra: down (reads answer 503; sends are taken)"},
		{"presence stale: reported", nil, nil, errors.New("stale"), true, 200, "presence: down (reported, not gating): stale"},
		{"kafka down", errors.New("no brokers"), nil, nil, true, 503, "kafka: down: no brokers"},
		{"router not listed yet", nil, nil, nil, false, 503, "routing: waiting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kafkaErr, storeErr, presenceErr = tt.kafka, tt.store, tt.presence
			routed.Store(tt.routed)
			code, body := probe()
			if code != tt.want || !strings.Contains(body, tt.wantInBody) {
				t.Fatalf("/readyz %d %q, want %d containing %q", code, body, tt.want, tt.wantInBody)
			}
		})
	}
}

// The pipeline waits for its router's first listing, but not forever: an
// etcd outage at start-up must not also stop storing messages. The flag
// follows a listing that comes later.
func TestWaitForRoutingIsBounded(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	listed := make(chan struct{})
	opt := Options{RoutingWait: 50 * time.Millisecond, RoutingReady: func(ctx context.Context) error {
		select {
		case <-listed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	var ready atomic.Bool
	done := make(chan struct{})
	go func() { waitForRouting(context.Background(), opt, &ready, log); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waitForRouting did not give up after RoutingWait")
	}
	if ready.Load() {
		t.Fatal("ready before the listing")
	}
	close(listed)
	deadline := time.Now().Add(10 * time.Second)
	for !ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the listing after the wait never set the flag")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
