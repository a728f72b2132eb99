package store

import (
	"context"
	"fmt"

	"github.com/imcluster/imcluster/services/message/model"
)

// Test hooks into the store's internals, for the external tests.

// HoldAllWrites takes every slot of st's in-flight write bound
// (MaxWritesInFlight) and returns the function that gives them back.
func HoldAllWrites(st *Store) (release func()) {
	for range cap(st.writes) {
		st.writes <- struct{}{}
	}
	return func() {
		for range cap(st.writes) {
			<-st.writes
		}
	}
}

// RememberConvBucket records in st's marker cache that conv's bucket b
// marker is written, so Persist skips it.
func RememberConvBucket(st *Store, conv string, b int32) {
	st.markers.add(fmt.Sprintf("c%s\x00%d", conv, b))
}

// StoredConvBuckets reads conv's conv_buckets markers.
func StoredConvBuckets(ctx context.Context, st *Store, conv string) ([]int32, error) {
	return st.readBuckets(ctx, "conversation", `SELECT bucket FROM conv_buckets WHERE conv_id = ?`, conv)
}

// StoredFeedBuckets reads user's feed_buckets markers of partition part.
func StoredFeedBuckets(ctx context.Context, st *Store, user string, part int32) ([]int32, error) {
	return st.readBuckets(ctx, "feed", `SELECT bucket FROM feed_buckets WHERE user_id = ? AND part = ?`, user, part)
}

// FeedContent reads the msg_id and body columns of user's feed entry at
// off of part (in bucket model.Bucket(off)).
func FeedContent(ctx context.Context, st *Store, user string, part int32, off int64) (msgID, body *string, err error) {
	err = st.s.Query(`SELECT msg_id, body FROM feed WHERE user_id = ? AND part = ? AND bucket = ? AND off = ?`,
		user, part, model.Bucket(off), off).WithContext(ctx).Scan(&msgID, &body)
	return msgID, body, err
}
