package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

// fakeLogEnds answers the log ends it is set to, counting and timing reads.
type fakeLogEnds struct {
	mu          sync.Mutex
	ends        []int64
	err         error
	reads       int
	at          []time.Time
	inFlight    int
	maxInFlight int
}

func (f *fakeLogEnds) set(ends []int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ends, f.err = ends, err
}

func (f *fakeLogEnds) LogEnds(context.Context) ([]int64, error) {
	f.mu.Lock()
	f.reads++
	f.at = append(f.at, time.Now())
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	ends, err := append([]int64(nil), f.ends...), f.err
	f.mu.Unlock()
	time.Sleep(time.Millisecond) // a read takes time: lets concurrent callers overlap it
	f.mu.Lock()
	f.inFlight--
	f.mu.Unlock()
	return ends, err
}

func (f *fakeLogEnds) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func logEndServer(t *testing.T, f *fakeLogEnds, gap time.Duration) (*httptest.Server, string) {
	t.Helper()
	authn, tok := userAuth(t, "bob")
	srv := &Server{Auth: authn, Store: syncStore{}, Partitions: 2, LogEnds: f, LogEndRefreshGap: gap,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts, tok
}

func syncPath(next ...int64) string {
	if len(next) == 0 {
		return "/v1/sync"
	}
	return "/v1/sync?cursor=" + url.QueryEscape(model.SyncCursor{Next: next, SinceMs: time.Now().UnixMilli()}.Encode())
}

// A cursor beyond the log end (read from Kafka after the request arrived)
// is 410 cursor_expired; a cursor within the cached ends costs no read; a
// cursor beyond the cache but within the log is served; a failed read is
// 503 unavailable, never a guess.
func TestSyncCursorAheadOfLog(t *testing.T) {
	kafkaDown := errors.New("kafka down")
	tests := []struct {
		name       string
		kafka      []int64 // the log ends once the cache holds [10 10]
		kafkaErr   error
		cursor     []int64 // nil: the empty cursor
		wantStatus int
		wantCode   string
		wantReads  int
	}{
		{"within the cache", []int64{10, 10}, nil, []int64{5, 3}, http.StatusOK, "", 0},
		{"equal to the end", []int64{10, 10}, nil, []int64{10, 10}, http.StatusOK, "", 0},
		{"beyond a stale cache, within the log", []int64{20, 10}, nil, []int64{15, 10}, http.StatusOK, "", 1},
		{"beyond the log", []int64{12, 10}, nil, []int64{15, 10}, http.StatusGone, protocol.ErrCursorExpired, 1},
		{"beyond the log on the other partition", []int64{10, 10}, nil, []int64{0, 11}, http.StatusGone, protocol.ErrCursorExpired, 1},
		{"kafka down, beyond the cache", nil, kafkaDown, []int64{15, 10}, http.StatusServiceUnavailable, protocol.ErrUnavailable, 1},
		{"kafka down, within the cache", nil, kafkaDown, []int64{10, 0}, http.StatusOK, "", 0},
		{"kafka down, empty cursor", nil, kafkaDown, nil, http.StatusOK, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLogEnds{ends: []int64{10, 10}}
			ts, tok := logEndServer(t, f, time.Millisecond)
			// Fill the cache with [10 10].
			if status, code, m := call(t, ts, http.MethodGet, syncPath(10, 10), tok, ""); status != http.StatusOK {
				t.Fatalf("warm-up: %d %s %v", status, code, m)
			}
			f.set(tc.kafka, tc.kafkaErr)
			before := f.count()
			status, code, m := call(t, ts, http.MethodGet, syncPath(tc.cursor...), tok, "")
			if status != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("got %d %q %v, want %d %q", status, code, m, tc.wantStatus, tc.wantCode)
			}
			if code == protocol.ErrCursorExpired {
				if msg, _ := m["message"].(string); !strings.Contains(msg, "ahead of the log") {
					t.Errorf("message %q does not say the cursor is ahead of the log", msg)
				}
			}
			if got := f.count() - before; got != tc.wantReads {
				t.Errorf("%d log end reads, want %d", got, tc.wantReads)
			}
		})
	}
}

// A flood of cursors beyond the log costs Kafka one read at a time and at
// most one per gap; every one of them still gets its 410.
func TestSyncCursorAheadOfLogRateLimited(t *testing.T) {
	const gap = 100 * time.Millisecond
	f := &fakeLogEnds{ends: []int64{10, 10}}
	ts, tok := logEndServer(t, f, gap)
	const workers, perWorker = 8, 15
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, workers*perWorker)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				status, code, _ := call(t, ts, http.MethodGet, syncPath(11, 0), tok, "")
				if status != http.StatusGone || code != protocol.ErrCursorExpired {
					errs <- code
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for code := range errs {
		t.Errorf("a cursor ahead of the log got %q, want %s", code, protocol.ErrCursorExpired)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxInFlight != 1 {
		t.Errorf("%d log end reads at once, want 1", f.maxInFlight)
	}
	if limit := int(elapsed/gap) + 1; f.reads > limit {
		t.Errorf("%d log end reads in %s, want at most %d (one per %s)", f.reads, elapsed, limit, gap)
	}
	// Each pair at least half a gap apart: the fake stamps a read when it
	// gets the call, not when the cache let it begin, and on a loaded box
	// the goroutine may be descheduled in between for more than a tenth of
	// the gap. The count bound above holds the average to a gap; without
	// the rate limit reads come a millisecond apart.
	for i := 1; i < len(f.at); i++ {
		if d := f.at[i].Sub(f.at[i-1]); d < gap/2 {
			t.Errorf("reads %d and %d %s apart, want about %s (at least %s)", i-1, i, d, gap, gap/2)
		}
	}
	t.Logf("%d requests, %d reads in %s", workers*perWorker, f.reads, elapsed)
}

// heldLogEnds answers reads in order from ends, each once released.
type heldLogEnds struct {
	ends    [][]int64
	release chan struct{}
	begun   chan struct{}
}

func (h *heldLogEnds) LogEnds(ctx context.Context) ([]int64, error) {
	h.begun <- struct{}{}
	<-h.release
	e := h.ends[0]
	h.ends = h.ends[1:]
	return e, nil
}

// A read that began before a request arrived may predate the records its
// cursor points past: it cannot expire that cursor; the request waits for
// the next read.
func TestLogEndReadBeforeArrivalDoesNotExpire(t *testing.T) {
	h := &heldLogEnds{ends: [][]int64{{10, 10}, {12, 10}}, release: make(chan struct{}), begun: make(chan struct{}, 2)}
	c := &logEndCache{src: h, gap: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { errA <- c.check(ctx, model.SyncCursor{Next: []int64{11, 0}}) }()
	select {
	case <-h.begun: // the first read is in flight
	case <-ctx.Done():
		t.Fatal("no read began")
	}
	// The record at 11 is appended and the cursor {12, 0} issued; then B
	// arrives while the first read is still in flight.
	go func() { errB <- c.check(ctx, model.SyncCursor{Next: []int64{12, 0}}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		w := c.waiting
		c.mu.Unlock()
		if w == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d checks waiting, want 2", w)
		}
		time.Sleep(time.Millisecond)
	}
	h.release <- struct{}{} // the first read answers {10, 10}
	if err := <-errA; !errors.Is(err, errCursorAhead) {
		t.Errorf("A (arrived before the read): %v, want ahead of the log", err)
	}
	select {
	case <-h.begun: // B asked for a read of its own
	case <-ctx.Done():
		t.Fatal("B did not wait for a read begun after its arrival")
	}
	h.release <- struct{}{} // {12, 10}
	if err := <-errB; err != nil {
		t.Errorf("B (arrived during the first read): %v, want within the log", err)
	}
}

// An offset the API's own producer had acknowledged raises the cached end:
// a cursor just past it needs no read; a read still replaces the ends.
func TestLogEndObserveProduced(t *testing.T) {
	f := &fakeLogEnds{ends: []int64{10, 10}}
	c := &logEndCache{src: f, gap: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.check(ctx, model.SyncCursor{Next: []int64{10, 10}}); err != nil || f.count() != 1 {
		t.Fatalf("warm-up: %v, %d reads", err, f.count())
	}
	c.observe(0, 42)
	c.observe(1, 5)  // lower: ignored
	c.observe(7, 99) // no such partition: ignored
	if err := c.check(ctx, model.SyncCursor{Next: []int64{42, 10}}); err != nil || f.count() != 1 {
		t.Fatalf("cursor at a produced end: %v, %d reads (want none more)", err, f.count())
	}
	f.set([]int64{3, 3}, nil) // the log restarted
	if err := c.check(ctx, model.SyncCursor{Next: []int64{43, 0}}); !errors.Is(err, errCursorAhead) || f.count() != 2 {
		t.Fatalf("cursor beyond: %v, %d reads; want ahead of the log after one read", err, f.count())
	}
	if err := c.check(ctx, model.SyncCursor{Next: []int64{42, 0}}); !errors.Is(err, errCursorAhead) {
		t.Fatalf("after the read replaced the ends, 42 > 3: %v, want ahead of the log", err)
	}
}
