package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/imcluster/imcluster/services/message/model"
)

// LogEnds reads the log end offset (high watermark: the offset the next
// record will get) of every partition of the message topic from Kafka,
// indexed by partition; the caller owns the slice. mlog.Producer
// implements it.
type LogEnds interface {
	LogEnds(ctx context.Context) ([]int64, error)
}

// Bounds of the log end checks.
const (
	// DefaultLogEndRefreshGap is the least time between two log end reads
	// from Kafka, whatever the number of cursors beyond the cached ends.
	DefaultLogEndRefreshGap = 100 * time.Millisecond
	// logEndMaxAge is how long cached ends are trusted to say "within":
	// ends only grow while the topic lives, but a topic re-created under a
	// running tier shrinks them, and a cache that is never beaten would
	// hide that. Past it, the next sync waits for one fresh read.
	logEndMaxAge = time.Minute
	// logEndReadTimeout bounds one read of the log ends.
	logEndReadTimeout = 5 * time.Second
)

// mLogEndReads counts the reads of the log ends from Kafka.
var mLogEndReads = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "imcluster_message_sync_log_end_reads_total",
	Help: "Reads of the log ends from Kafka for sync cursor checks, by result (ok, error).",
}, []string{"result"})

// errCursorAhead is the answer for a cursor beyond the log end.
var errCursorAhead = errors.New("sync cursor is ahead of the log")

// logEndCache answers whether a sync cursor is within the log, without a
// Kafka round trip per sync: it keeps the log ends last read and reads them
// again only for a cursor beyond them.
//
// Why a cursor is judged only against ends read after its request arrived:
// a cursor issued by this tier points at most one past a record that was in
// the log before the cursor was issued, hence before the request arrived;
// the log end only grows while the topic lives, so a read that began after
// the arrival is at or beyond every position of a good cursor. A cached
// read may be older than the cursor (records appended since) and is only
// trusted to say "within".
//
// Reads are single-flight and at most one per gap: a flood of cursors beyond
// the log costs Kafka at most one read per gap, each of them waiting at most
// a gap plus one read.
type logEndCache struct {
	src LogEnds
	gap time.Duration

	mu       sync.Mutex
	ends     []int64       // from the last successful read (nil: none yet)
	endsAt   time.Time     // when the read of ends began
	err      error         // of the last read
	started  uint64        // reads begun
	finished uint64        // the read whose answer ends/err hold
	lastAt   time.Time     // when the last read began
	flight   chan struct{} // closed when the read in flight (or scheduled) ends
	waiting  int           // checks waiting for a read
}

// check returns nil when every position of cur is within the log ends,
// an error wrapping errCursorAhead when one is beyond the log end read
// after the call began, or another error when the log ends cannot be read.
func (c *logEndCache) check(ctx context.Context, cur model.SyncCursor) error {
	c.mu.Lock()
	if within(cur, nil) || (within(cur, c.ends) && time.Since(c.endsAt) < logEndMaxAge) {
		c.mu.Unlock()
		return nil
	}
	arrived := c.started // any read begun after this one will do
	for c.finished <= arrived {
		ch := c.flight
		if ch == nil {
			ch = c.startRead()
		}
		c.waiting++
		c.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = fmt.Errorf("while waiting for the log ends: %w", ctx.Err())
		}
		c.mu.Lock()
		c.waiting--
		if err != nil {
			c.mu.Unlock()
			return err
		}
	}
	// Judged under the lock: observe may raise ends in place.
	defer c.mu.Unlock()
	ends := c.ends
	if c.err != nil {
		return c.err
	}
	if len(ends) != len(cur.Next) {
		return fmt.Errorf("while checking the sync cursor: the log has %d partitions, the cursor %d", len(ends), len(cur.Next))
	}
	for p, n := range cur.Next {
		if n > ends[p] {
			return fmt.Errorf("%w: partition %d position %d, log end %d (the log was re-created or restored; resync)", errCursorAhead, p, n, ends[p])
		}
	}
	return nil
}

// observe raises the cached end of part to end: the API's own producer
// had the record at end-1 acknowledged with acks=all, so the log end (high
// watermark) is at least end. Cursors issued for records this process
// produced then need no read. Only a read replaces the ends (so ends that
// shrank are noticed): observe only merges.
func (c *logEndCache) observe(part int32, end int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int(part) >= 0 && int(part) < len(c.ends) && end > c.ends[part] {
		c.ends[part] = end
	}
}

// within reports whether every position of cur is at or below ends
// (position 0, the beginning, is within any log).
func within(cur model.SyncCursor, ends []int64) bool {
	for p, n := range cur.Next {
		if n > 0 && (p >= len(ends) || n > ends[p]) {
			return false
		}
	}
	return true
}

// startRead schedules a read of the log ends no sooner than a gap after the
// previous one began and returns the channel closed when it ends. c.mu is
// held.
func (c *logEndCache) startRead() chan struct{} {
	ch := make(chan struct{})
	c.flight = ch
	wait := time.Until(c.lastAt.Add(c.gap))
	go func() {
		if wait > 0 {
			time.Sleep(wait) // the rate limit: at most one read per gap
		}
		c.mu.Lock()
		c.started++
		n := c.started
		at := time.Now()
		c.lastAt = at
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), logEndReadTimeout)
		ends, err := c.src.LogEnds(ctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("while reading the log ends: %w", err)
			mLogEndReads.WithLabelValues("error").Inc()
		} else {
			mLogEndReads.WithLabelValues("ok").Inc()
		}
		c.mu.Lock()
		c.finished, c.err = n, err
		if err == nil {
			// Replaced, not merged: ends that shrank mean a re-created log,
			// which cursors must be judged against.
			c.ends, c.endsAt = ends, at
		}
		c.flight = nil
		c.mu.Unlock()
		close(ch)
	}()
	return ch
}
