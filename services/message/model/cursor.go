package model

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxPartitions bounds the partition count a cursor may carry.
const MaxPartitions = 4096

// SyncCursor is a device's position in its user's feed: for every Kafka
// partition, the next offset it has not seen. It is opaque to clients.
type SyncCursor struct {
	Next []int64 // len = partition count
	// SinceMs (unix ms) is the cursor's time horizon: every feed entry at
	// or after Next was stored at or after SinceMs. Feed entries expire
	// (IM_FEED_RETENTION), so a cursor whose horizon is older than the
	// retention may point past expired entries: the store answers
	// cursor expired. 0: unknown (the beginning, or a cursor of a version
	// without it) — the store then uses the time feed retention began.
	SinceMs int64
}

// NewSyncCursor returns the cursor at the beginning of every partition.
func NewSyncCursor(partitions int) SyncCursor {
	return SyncCursor{Next: make([]int64, partitions)}
}

// Sync cursor versions: 's' (offsets only, still accepted) and 't'
// (offsets, then SinceMs).
const (
	syncCursorTag     = 's'
	syncCursorTagTime = 't'
)

// Encode returns the cursor's opaque text form.
func (c SyncCursor) Encode() string {
	b := []byte{syncCursorTagTime}
	b = binary.AppendUvarint(b, uint64(len(c.Next)))
	for _, n := range c.Next {
		b = binary.AppendUvarint(b, uint64(n))
	}
	b = binary.AppendUvarint(b, uint64(max(c.SinceMs, 0)))
	return base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadCursor is wrapped by every cursor decoding failure.
var ErrBadCursor = errors.New("bad cursor")

// DecodeSyncCursor parses s; "" is the beginning. partitions must match the
// count the cursor was made for: the partition count is immutable.
func DecodeSyncCursor(s string, partitions int) (SyncCursor, error) {
	if s == "" {
		return NewSyncCursor(partitions), nil
	}
	if len(s) > 16*MaxPartitions {
		return SyncCursor{}, fmt.Errorf("%w: too long", ErrBadCursor)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || (b[0] != syncCursorTag && b[0] != syncCursorTagTime) {
		return SyncCursor{}, fmt.Errorf("%w: not a sync cursor", ErrBadCursor)
	}
	timed := b[0] == syncCursorTagTime
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n != uint64(partitions) {
		return SyncCursor{}, fmt.Errorf("%w: partition count differs", ErrBadCursor)
	}
	b = b[k:]
	c := NewSyncCursor(partitions)
	for i := range c.Next {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > 1<<62 {
			return SyncCursor{}, fmt.Errorf("%w: truncated", ErrBadCursor)
		}
		c.Next[i] = int64(v)
		b = b[k:]
	}
	if timed {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > 1<<62 {
			return SyncCursor{}, fmt.Errorf("%w: truncated", ErrBadCursor)
		}
		c.SinceMs = int64(v)
		b = b[k:]
	}
	if len(b) != 0 {
		return SyncCursor{}, fmt.Errorf("%w: trailing bytes", ErrBadCursor)
	}
	return c, nil
}

// UnreadCursor is a position in a user's unread pull: conversations are
// walked in conv_id order; within ConvID, messages after Seq remain.
type UnreadCursor struct {
	ConvID string
	After  int64 // -1: from the read cursor
}

const unreadCursorTag = 'u'

// Encode returns the cursor's opaque text form.
func (c UnreadCursor) Encode() string {
	b := []byte{unreadCursorTag}
	b = binary.AppendVarint(b, c.After)
	b = append(b, c.ConvID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeUnreadCursor parses s; "" is the beginning.
func DecodeUnreadCursor(s string) (UnreadCursor, error) {
	if s == "" {
		return UnreadCursor{After: -1}, nil
	}
	if len(s) > 512 {
		return UnreadCursor{}, fmt.Errorf("%w: too long", ErrBadCursor)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != unreadCursorTag {
		return UnreadCursor{}, fmt.Errorf("%w: not an unread cursor", ErrBadCursor)
	}
	v, k := binary.Varint(b[1:])
	if k <= 0 || v < -1 {
		return UnreadCursor{}, fmt.Errorf("%w: truncated", ErrBadCursor)
	}
	c := UnreadCursor{After: v, ConvID: string(b[1+k:])}
	if err := ValidConvID(c.ConvID); err != nil {
		return UnreadCursor{}, fmt.Errorf("%w: %v", ErrBadCursor, err)
	}
	return c, nil
}
