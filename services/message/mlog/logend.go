package mlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// LogEnds returns the log end offset (high watermark: the offset the next
// record will get) of every partition of the producer's topic, indexed by
// partition, asking each partition leader once for all the partitions it
// leads. It answers through the producer's client (no second client).
//
// A moved leader (a broker restart, a topic just created) answers "not the
// leader" until the client's metadata catch up, and a restarted broker
// drops the connections to it: such transient errors are retried, with a
// backoff, until an answer or until ctx ends (then the last error is
// returned beside ctx's) — a sync waits for the metadata refresh within its
// own deadline instead of failing after a fixed few tries. Other errors
// return at once.
//
// The call is not cheap enough for every request: the API caches the
// answer and asks again only when a cursor is beyond it (api.LogEnds).
// sarama's own network timeouts bound each request.
func (p *Producer) LogEnds(ctx context.Context) ([]int64, error) {
	read := p.readEnds
	if read == nil {
		read = func() ([]int64, error) { return logEnds(p.client, p.topic) }
	}
	type result struct {
		ends []int64
		err  error
	}
	done := make(chan result, 1)
	var last atomic.Pointer[error] // the last transient error, for an answer past ctx
	go func() {
		wait := logEndBackoffMin
		for {
			ends, err := read()
			if err == nil || !retriable(err) || ctx.Err() != nil {
				done <- result{ends, err}
				return
			}
			last.Store(&err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, logEndBackoffMax)
		}
	}()
	select {
	case r := <-done:
		if r.err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("while reading the log ends of %s: %w (last error: %w)", p.topic, ctx.Err(), r.err)
		}
		return r.ends, r.err
	case <-ctx.Done():
		if err := last.Load(); err != nil {
			return nil, fmt.Errorf("while reading the log ends of %s: %w (last error: %w)", p.topic, ctx.Err(), *err)
		}
		return nil, fmt.Errorf("while reading the log ends of %s: %w", p.topic, ctx.Err())
	}
}

// Backoff bounds between the attempts of one LogEnds call.
const (
	logEndBackoffMin = 50 * time.Millisecond
	logEndBackoffMax = 500 * time.Millisecond
)

// retriable reports whether err may pass once the client's metadata or
// connections catch up: a leader that moved or is being elected, a topic
// not yet known to the broker asked, or a broker that went away.
func retriable(err error) bool {
	var ke sarama.KError
	if errors.As(err, &ke) {
		return errors.Is(ke, sarama.ErrNotLeaderForPartition) || errors.Is(ke, sarama.ErrLeaderNotAvailable) ||
			errors.Is(ke, sarama.ErrUnknownTopicOrPartition) || errors.Is(ke, sarama.ErrFencedLeaderEpoch) ||
			errors.Is(ke, sarama.ErrUnknownLeaderEpoch) ||
			errors.Is(ke, sarama.ErrRequestTimedOut)
	}
	var ne net.Error
	return errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrNotConnected) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func logEnds(c sarama.Client, topic string) ([]int64, error) {
	parts, err := c.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("while reading the partitions of %s: %w", topic, err)
	}
	byLeader := map[*sarama.Broker][]int32{}
	for _, p := range parts {
		b, err := c.Leader(topic, p)
		if err != nil {
			_ = c.RefreshMetadata(topic)
			return nil, fmt.Errorf("while finding the leader of %s/%d: %w", topic, p, err)
		}
		byLeader[b] = append(byLeader[b], p)
	}
	ends := make([]int64, len(parts))
	for b, ps := range byLeader {
		req := sarama.NewOffsetRequest(c.Config().Version)
		for _, p := range ps {
			req.AddBlock(topic, p, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			_ = b.Close()                // reconnects on next use, as sarama's GetOffset does
			_ = c.RefreshMetadata(topic) // the broker may no longer lead
			return nil, fmt.Errorf("while listing the log ends of %s at broker %d: %w", topic, b.ID(), err)
		}
		for _, p := range ps {
			blk := resp.GetBlock(topic, p)
			switch {
			case blk == nil:
				return nil, fmt.Errorf("while listing the log end of %s/%d: %w", topic, p, sarama.ErrIncompleteResponse)
			case !errors.Is(blk.Err, sarama.ErrNoError):
				_ = c.RefreshMetadata(topic) // e.g. the leader moved
				return nil, fmt.Errorf("while listing the log end of %s/%d: %w", topic, p, blk.Err)
			case len(blk.Offsets) != 1:
				return nil, fmt.Errorf("while listing the log end of %s/%d: %d offsets", topic, p, len(blk.Offsets))
			}
			if int(p) >= len(ends) {
				return nil, fmt.Errorf("while listing the log ends of %s: partition %d of %d", topic, p, len(ends))
			}
			ends[p] = blk.Offsets[0]
		}
	}
	return ends, nil
}
