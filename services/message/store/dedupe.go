package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"
)

// StoredID is where the message of one msg_id is stored: the msg_ids row
// the pipeline writes beside the message row.
type StoredID struct {
	ConvID string
	Seq    int64
	Hash   []byte // model.ContentHash of the stored content
	AtMs   int64  // when the stored copy was accepted (unix ms)
}

// SameContent reports whether hash matches the stored content's hash.
func (s StoredID) SameContent(hash []byte) bool { return bytes.Equal(s.Hash, hash) }

const (
	cqlInsertMsgID  = `INSERT INTO msg_ids (msg_id, conv_id, seq, hash, sent_at_ms) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?`
	cqlSelectMsgIDs = `SELECT msg_id, conv_id, seq, hash, sent_at_ms FROM msg_ids WHERE msg_id IN ?`
	// lookupPerRequest bounds the msg_ids one read asks for (a bounded IN
	// list: its coordinator reads them one by one; a long one would hold
	// it and its memory).
	lookupPerRequest = 64
	// lookupConcurrency bounds the reads one LookupMessageIDs runs at once
	// (they also take slots of MaxWritesInFlight).
	lookupConcurrency = 8
)

// msgIDTimestamp makes the earliest copy in log order win: a row written
// for a lower seq has the higher write timestamp.
func msgIDTimestamp(seq int64) int64 { return 1<<62 - seq }

// LookupMessageID reads where msgID is stored (one plain read). ok is
// false when it is not stored (yet).
func (st *Store) LookupMessageID(ctx context.Context, msgID string) (StoredID, bool, error) {
	found := map[string]StoredID{}
	if err := st.readMsgIDs(ctx, []string{msgID}, func(id string, s StoredID) { found[id] = s }); err != nil {
		return StoredID{}, false, err
	}
	s, ok := found[msgID]
	return s, ok, nil
}

// LookupMessageIDs reads several msg_ids at once and returns the stored
// ones: lookupPerRequest of them per request (WHERE msg_id IN ?; the
// request's cost dominates a point read's, see pack.go), the requests
// concurrent. It fails as a whole if any read fails: the caller retries it.
func (st *Store) LookupMessageIDs(ctx context.Context, ids []string) (map[string]StoredID, error) {
	found := make(map[string]StoredID, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(lookupConcurrency)
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), lookupPerRequest)]
		ids = ids[len(chunk):]
		g.Go(func() error {
			release, err := st.acquire(gctx)
			if err != nil {
				return err
			}
			defer release()
			return st.readMsgIDs(gctx, chunk, func(id string, s StoredID) {
				mu.Lock()
				found[id] = s
				mu.Unlock()
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return found, nil
}

// readMsgIDs reads the msg_ids rows of ids (one request) and hands each
// stored one to found.
func (st *Store) readMsgIDs(ctx context.Context, ids []string, found func(string, StoredID)) error {
	it := st.s.Query(cqlSelectMsgIDs, ids).WithContext(ctx).PageSize(len(ids)).Iter()
	var id string
	var s StoredID
	var at *int64
	for it.Scan(&id, &s.ConvID, &s.Seq, &s.Hash, &at) {
		if at != nil {
			s.AtMs = *at
		}
		found(id, s)
		s, at = StoredID{}, nil
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("while reading %d msg_ids: %w", len(ids), err)
	}
	return nil
}
