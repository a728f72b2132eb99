package store

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// Packing a pipeline batch's writes into few requests.
//
// Per message the pipeline writes about six rows, each in its own
// partition (the message, its msg_ids row, two feed entries, two
// conversation rows), and Cassandra's cost is mostly per request (protocol,
// query processing, the response), not per row: sent one request per
// partition, they cost several times what the rows do. So the statements
// of each partition are kept together as a group, in the order they must
// apply, and whole groups are packed into unlogged batches of at most
// maxBatchStatements statements and maxBatchBytes. Cassandra applies each
// partition's part of a batch as one mutation, atomically and in
// isolation, so every guarantee a single-partition batch gave still holds
// (a reader that sees a user's feed entry at offset N sees every earlier
// one of that batch); a group never spans two requests (a group too large
// for one batch is written as today: its own batches, one after the
// other), so no partition's writes can reorder. What packing gives up:
// a request may now touch partitions on several replicas, whose coordinator
// forwards the mutations it does not own (bounded by the batch limits, a
// few dozen small mutations; unlogged, so no batch log). Measured on one
// node (docs/benchmarks.md): Cassandra's CPU per pipeline record fell from
// 0.32–0.34 ms to 0.28–0.29 ms with packing.

// writeGroups schedules the writes of groups on g (each group the
// statements of one partition, in order), packed into batches.
func (st *Store) writeGroups(ctx context.Context, g *errgroup.Group, groups [][]stmt) {
	var chunk []stmt
	size := 0
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		c := chunk
		g.Go(func() error { return st.batch(ctx, c) })
		chunk, size = nil, 0
	}
	for _, grp := range groups {
		n, b := len(grp), bytesOf(grp)
		if n > maxBatchStatements || b > maxBatchBytes {
			g.Go(func() error { return st.batches(ctx, grp) })
			continue
		}
		if len(chunk)+n > maxBatchStatements || size+b > maxBatchBytes {
			flush()
		}
		chunk = append(chunk, grp...)
		size += b
	}
	flush()
}

func bytesOf(stmts []stmt) int {
	n := 0
	for _, s := range stmts {
		n += s.size
	}
	return n
}

// singleKnownBucket reports the one feed bucket of a user's entries in
// this batch when its marker is known to be written: the entries are then
// one group (one partition) needing nothing before them. Otherwise the
// feed goes through writeFeed, which writes markers and buckets in order.
func (st *Store) singleKnownBucket(user string, part int32, buckets map[int32][]stmt) (int32, bool) {
	if len(buckets) != 1 {
		return 0, false
	}
	for b := range buckets {
		return b, st.markers.has(fmt.Sprintf("f%s\x00%d\x00%d", user, part, b))
	}
	return 0, false
}
