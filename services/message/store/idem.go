package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/gocql/gocql"
)

// Idem is the durable idempotency row of a (sender, client_msg_id).
type Idem struct {
	MsgID     string
	ConvID    string
	Hash      []byte
	CreatedMs int64
	Produced  bool  // the API recorded the acks=all answer of the first produce
	Off       int64 // its offset (= the message's seq) when Produced
	Seq       int64 // the persisted seq, -1 when not yet persisted
}

// SameContent reports whether hash matches the row's content hash.
func (i Idem) SameContent(hash []byte) bool { return bytes.Equal(i.Hash, hash) }

// ClaimIdempotency inserts the row for (sender, cmid) if none exists, with a
// lightweight transaction (Paxos: ~4 round trips, measured in
// docs/benchmarks.md). applied=false returns the existing row instead. This
// is the one read-before-write of the send path, and the point of it: only
// a serial read can tell a retry from a first send durably.
func (st *Store) ClaimIdempotency(ctx context.Context, sender, cmid string, want Idem) (Idem, bool, error) {
	m := map[string]any{}
	applied, err := st.s.Query(`INSERT INTO idempotency (sender, client_msg_id, msg_id, conv_id, hash, created_ms)
		VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS`, sender, cmid, want.MsgID, want.ConvID, want.Hash, want.CreatedMs).
		WithContext(ctx).MapScanCAS(m)
	if err != nil {
		return Idem{}, false, fmt.Errorf("while claiming idempotency key: %w", err)
	}
	if applied {
		want.Seq = -1
		return want, true, nil
	}
	// A retry (rare): read the row with typed nulls, serially.
	var i Idem
	var part *int
	var off, seq *int64
	err = st.s.Query(`SELECT msg_id, conv_id, hash, created_ms, part, off, seq FROM idempotency WHERE sender = ? AND client_msg_id = ?`,
		sender, cmid).WithContext(ctx).Consistency(gocql.Consistency(gocql.LocalSerial)).Scan(&i.MsgID, &i.ConvID, &i.Hash, &i.CreatedMs, &part, &off, &seq)
	if err != nil {
		return Idem{}, false, fmt.Errorf("while reading idempotency key: %w", err)
	}
	i.Seq = -1
	if part != nil && off != nil {
		i.Produced, i.Off = true, *off
	}
	if seq != nil {
		i.Seq = *seq
	}
	return i, false, nil
}

// SetProduced records where the first produce of (sender, cmid) landed.
func (st *Store) SetProduced(ctx context.Context, sender, cmid string, part int32, off int64) error {
	if err := st.s.Query(`UPDATE idempotency SET part = ?, off = ? WHERE sender = ? AND client_msg_id = ?`,
		part, off, sender, cmid).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("while recording produced offset: %w", err)
	}
	return nil
}

// PersistedSeq returns the seq the pipeline persisted (sender, cmid) at, or
// -1. Read only for records marked Retry.
func (st *Store) PersistedSeq(ctx context.Context, sender, cmid string) (int64, error) {
	var seq *int64
	err := st.s.Query(`SELECT seq FROM idempotency WHERE sender = ? AND client_msg_id = ?`, sender, cmid).
		WithContext(ctx).Scan(&seq)
	if err == gocql.ErrNotFound {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("while reading idempotency seq: %w", err)
	}
	if seq == nil {
		return -1, nil
	}
	return *seq, nil
}
