package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/imcluster/imcluster/services/message/model"
)

// Feed retention.
//
// Feed rows (and the recall cells that update them) are written USING TTL
// the process's retention (UseFeedRetention); history (messages) and the
// small per-user tables are not trimmed. A per-write TTL rather than a table
// default_time_to_live: the retention is configuration, and a per-write TTL
// follows a change at once without a migration, while the rows already
// written keep the TTL they got.
//
// Detecting a cursor that may point past expired rows costs no read and no
// write on the pipeline's path, and one cached point read per minute on the
// sync path: every sync cursor carries a time horizon (model.SyncCursor.
// SinceMs) such that every feed row at or after its offsets was stored at or
// after it. A row stored at W with TTL r lives until W + r, so while
// now < SinceMs + r (minus a margin for clock skew and Cassandra's one-second
// TTL granularity) no row the device has not seen can have expired; after
// that, sync answers ErrCursorExpired and the device resyncs from the durable
// state (docs/protocol.md). The horizon moves to the sync's start time
// whenever a sync reads every partition to its end (a row at or after the new
// cursor that existed then would have been read), and stays the same on a
// partial page. Alternatives rejected: a per-(user, partition) low-water
// mark needs a write or read per feed write (expiry itself writes nothing),
// and "does the last seen row still exist" needs a read per partition per
// sync and breaks when the retention shrinks.
//
// The horizon is judged against the smallest retention any message pod
// writes with, not only this process's: feed_retention.ttls holds every
// retention in use, each element refreshed by its pods every
// retentionAnnounce with a TTL of the retention plus two periods, so a
// setting lingers as long as rows written with it may live, and vanishes on
// its own after the last pod using it stopped. A cursor with no horizon (the
// beginning, or issued before retention existed) counts from
// feed_retention.since_ms, the time the migration enabled retention: rows
// written before it have no TTL. Replays rewrite feed rows with the same
// write timestamp, which can only extend a row's life (Cassandra keeps the
// later expiry of equal-timestamp cells).
//
// Limit: a pod whose retention is smaller than another's becomes visible to
// the other pods' checks within retentionReread; a retention shorter than
// that, set on some pods only, may expire rows before every pod judges by it.

// ErrCursorExpired is returned by Sync for a cursor whose horizon is older
// than the feed's retention: rows the device has not seen may have expired.
var ErrCursorExpired = errors.New("sync cursor expired")

const (
	retentionAnnounce = time.Minute // how often a pod refreshes its ttls element
	retentionReread   = time.Minute // how long the read of feed_retention is cached
	maxTTLSeconds     = 630720000   // Cassandra's largest TTL (20 years)
)

type retention struct {
	ttl int32 // seconds this process writes feed rows with; 0: no TTL

	mu      sync.Mutex
	readAt  time.Time
	minTTL  int32 // smallest retention in use (seconds), 0: none
	sinceMs int64 // feed_retention.since_ms; 0: unknown
}

// UseFeedRetention makes Persist write feed rows with TTL d (d <= 0: keep
// them forever) and announces d in feed_retention, now and every minute
// until Close, so every pod's Sync judges cursors by the smallest retention
// in use. Call it once, before the store is used.
func (st *Store) UseFeedRetention(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		st.ret.ttl = 0
		return nil
	}
	st.ret.ttl = int32(min(max(d/time.Second, 1), maxTTLSeconds))
	if err := st.announceRetention(ctx); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(retentionAnnounce)
		defer t.Stop()
		for {
			select {
			case <-st.closed:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = st.announceRetention(ctx) // the next tick retries; two periods of slack
				cancel()
			}
		}
	}()
	return nil
}

// FeedTTL is the TTL (seconds) Persist writes feed rows with; 0: none.
func (st *Store) FeedTTL() int32 { return st.ret.ttl }

func (st *Store) announceRetention(ctx context.Context) error {
	ttl := min(int64(st.ret.ttl)+int64(2*retentionAnnounce/time.Second), maxTTLSeconds)
	err := st.s.Query(`UPDATE feed_retention USING TTL ? SET ttls[?] = ? WHERE k = 0`, ttl, st.ret.ttl, time.Now().UnixMilli()).
		WithContext(ctx).Exec()
	if err != nil {
		return fmt.Errorf("while announcing the feed retention: %w", err)
	}
	return nil
}

// feedHorizon returns the smallest feed retention in use (seconds, 0: none)
// and the time retention began (unix ms, 0: unknown), cached for
// retentionReread.
func (st *Store) feedHorizon(ctx context.Context) (int32, int64, error) {
	r := &st.ret
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.readAt.IsZero() && time.Since(r.readAt) < retentionReread {
		return r.minTTL, r.sinceMs, nil
	}
	var since *int64
	var ttls map[int32]int64
	err := st.s.Query(`SELECT since_ms, ttls FROM feed_retention WHERE k = 0`).WithContext(ctx).Scan(&since, &ttls)
	if err != nil && err != gocql.ErrNotFound {
		return 0, 0, fmt.Errorf("while reading the feed retention: %w", err)
	}
	r.minTTL, r.sinceMs = r.ttl, 0
	for t := range ttls {
		if t > 0 && (r.minTTL == 0 || t < r.minTTL) {
			r.minTTL = t
		}
	}
	if since != nil {
		r.sinceMs = *since
	}
	r.readAt = time.Now()
	return r.minTTL, r.sinceMs, nil
}

// retentionMargin is how long before SinceMs + retention a cursor counts as
// expired: clock skew between API pods and Cassandra, and TTLs counted in
// whole seconds. A tenth of the retention, at least 1 s, at most 1 h.
func retentionMargin(ttlMs int64) int64 {
	return min(max(ttlMs/10, 1000), 3600_000)
}

// checkCursor answers ErrCursorExpired if rows at or after cur may have
// expired at nowMs, and returns cur's horizon (SinceMs, or the time retention
// began for a cursor without one).
func (st *Store) checkCursor(ctx context.Context, cur model.SyncCursor, nowMs int64) (int64, error) {
	minTTL, since, err := st.feedHorizon(ctx)
	if err != nil {
		return 0, err
	}
	h := cur.SinceMs
	if h <= 0 {
		h = since
	}
	if minTTL == 0 {
		return h, nil // nothing expires
	}
	h = min(h, nowMs) // a horizon in the future (clock skew, a forged cursor) counts as now
	ttlMs := int64(minTTL) * 1000
	if nowMs >= h+ttlMs-retentionMargin(ttlMs) {
		return 0, fmt.Errorf("%w: its horizon %s is older than the feed retention of %s",
			ErrCursorExpired, time.UnixMilli(h).UTC().Format(time.RFC3339), time.Duration(minTTL)*time.Second)
	}
	return h, nil
}
