package model

// BucketShift sizes the Cassandra partitions of history and feeds: a bucket
// covers 2^16 = 65,536 consecutive Kafka offsets of one partition. Since seq
// is the offset, a (conversation, bucket) or (user, partition, bucket)
// partition can never hold more than 65,536 rows, whatever the traffic: the
// Discord lesson (bounded partitions) without a clock.
const BucketShift = 16

// Bucket returns the bucket of seq (a Kafka offset).
func Bucket(seq int64) int32 { return int32(seq >> BucketShift) }

// BucketStart returns the first seq of bucket b.
func BucketStart(b int32) int64 { return int64(b) << BucketShift }

// MaxSeq is the largest seq a bucket can address.
const MaxSeq = int64(1)<<(31+BucketShift) - 1
