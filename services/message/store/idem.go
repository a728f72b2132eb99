package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/imcluster/imcluster/services/message/model"
)

// Idem is the durable idempotency row of a (sender, client_msg_id).
type Idem struct {
	MsgID     string
	ConvID    string
	Hash      []byte
	CreatedMs int64
	Produced  bool  // the API recorded the acks=all answer of the first produce
	Off       int64 // its offset (= the message's seq) when Produced
}

// SameContent reports whether hash matches the row's content hash.
func (i Idem) SameContent(hash []byte) bool { return bytes.Equal(i.Hash, hash) }

// ClaimIdempotency inserts the row for (sender, cmid) if none exists, with a
// lightweight transaction (Paxos: ~4 round trips, measured in
// docs/benchmarks.md). applied=false returns the existing row instead. This
// is the one read-before-write of the send path, and the point of it: only
// a serial read can tell a retry from a first send durably.
//
// A claim whose outcome is unknown (a CAS write timeout, common on a loaded
// Cassandra, or no answer at all) is made again (retryUncertain)
// within ctx: the next round of Paxos finishes or discards the first, and a
// row holding want.MsgID (fresh per attempt) is this claim's own, so it
// counts as applied.
func (st *Store) ClaimIdempotency(ctx context.Context, sender, cmid string, want Idem) (Idem, bool, error) {
	var i Idem
	var applied bool
	err := retryUncertain(ctx, func() (err error) {
		i, applied, err = st.claimOnce(ctx, sender, cmid, want)
		return err
	})
	switch {
	case err != nil:
		return Idem{}, false, err
	case !applied && i.MsgID == want.MsgID:
		return i, true, nil // an earlier attempt of this claim was applied
	}
	return i, applied, nil
}

// uncertainAttempts bounds the attempts of one write whose outcome stays
// unknown (retryUncertain).
const uncertainAttempts = 3

// retryUncertain runs op until it succeeds, fails for a reason other than
// an unknown outcome (uncertain), has run uncertainAttempts times, or ctx
// ends; it returns op's last error. Only operations that may be applied
// twice (idempotent writes, or a claim that recognises its own row) may
// go through it. gocql's own retry policy moves to the next host, so on a
// single node (dev, CI, small clusters) it never runs again.
func retryUncertain(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt >= uncertainAttempts || !uncertain(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
		}
	}
}

func (st *Store) claimOnce(ctx context.Context, sender, cmid string, want Idem) (Idem, bool, error) {
	m := map[string]any{}
	applied, err := st.s.Query(`INSERT INTO idempotency (sender, client_msg_id, msg_id, conv_id, hash, created_ms)
		VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS`, sender, cmid, want.MsgID, want.ConvID, want.Hash, want.CreatedMs).
		WithContext(ctx).MapScanCAS(m)
	if err != nil {
		return Idem{}, false, fmt.Errorf("while claiming idempotency key: %w", err)
	}
	if applied {
		return want, true, nil
	}
	i, err := st.ReadIdempotency(ctx, sender, cmid)
	return i, false, err
}

// uncertain reports whether err leaves a write's (or a lightweight transaction's) outcome
// unknown (or the coordinator could not run it yet): making it again is
// safe and decides it.
func uncertain(err error) bool {
	var (
		wt *gocql.RequestErrWriteTimeout
		rt *gocql.RequestErrReadTimeout
		un *gocql.RequestErrUnavailable
		cu *gocql.RequestErrCASWriteUnknown
	)
	return errors.As(err, &wt) || errors.As(err, &rt) || errors.As(err, &un) || errors.As(err, &cu) ||
		errors.Is(err, gocql.ErrTimeoutNoResponse)
}

// ReadIdempotency reads the row of (sender, cmid) serially (a retry, rare).
func (st *Store) ReadIdempotency(ctx context.Context, sender, cmid string) (Idem, error) {
	var i Idem
	var part *int
	var off *int64
	err := st.s.Query(`SELECT msg_id, conv_id, hash, created_ms, part, off FROM idempotency WHERE sender = ? AND client_msg_id = ?`,
		sender, cmid).WithContext(ctx).Consistency(gocql.Consistency(gocql.LocalSerial)).Scan(&i.MsgID, &i.ConvID, &i.Hash, &i.CreatedMs, &part, &off)
	if err != nil {
		return Idem{}, fmt.Errorf("while reading idempotency key: %w", err)
	}
	if part != nil && off != nil {
		i.Produced, i.Off = true, *off
	}
	return i, nil
}

// SetProduced records where the first produce of (sender, cmid) landed. A
// write whose outcome is unknown is made again (it sets fixed values): a
// retry of the send waits for this row until its lease runs out.
func (st *Store) SetProduced(ctx context.Context, sender, cmid string, part int32, off int64) error {
	err := retryUncertain(ctx, func() error {
		return st.s.Query(`UPDATE idempotency SET part = ?, off = ? WHERE sender = ? AND client_msg_id = ?`,
			part, off, sender, cmid).WithContext(ctx).Exec()
	})
	if err != nil {
		return fmt.Errorf("while recording produced offset: %w", err)
	}
	return nil
}

// FindMessage searches conv, newest first from seq < before, for msgID,
// stopping at the first message sent before notBeforeMs; it returns the
// message's seq or -1. Only the pipeline's check of Retry records calls it
// (a rare path): the scan covers the messages that landed since the
// original attempt, bounded by the conversation's traffic in that window.
func (st *Store) FindMessage(ctx context.Context, conv, msgID string, before, notBeforeMs int64) (int64, error) {
	top := model.Bucket(max(before-1, 0))
	for {
		buckets, err := st.readBuckets(ctx, "conversation", `SELECT bucket FROM conv_buckets WHERE conv_id = ? AND bucket <= ? LIMIT ?`,
			conv, top, bucketsPerRead)
		if err != nil {
			return -1, err
		}
		for _, b := range buckets {
			it := st.s.Query(`SELECT seq, msg_id, sent_at_ms FROM messages WHERE conv_id = ? AND bucket = ? AND seq < ?`,
				conv, b, before).WithContext(ctx).PageSize(500).Iter()
			var seq int64
			var id *string
			var sent *int64
			for it.Scan(&seq, &id, &sent) {
				if id != nil && *id == msgID {
					_ = it.Close()
					return seq, nil
				}
				if sent != nil && *sent < notBeforeMs {
					return -1, it.Close()
				}
			}
			if err := it.Close(); err != nil {
				return -1, fmt.Errorf("while searching messages: %w", err)
			}
		}
		if len(buckets) < bucketsPerRead {
			return -1, nil
		}
		top = buckets[len(buckets)-1] - 1
	}
}
