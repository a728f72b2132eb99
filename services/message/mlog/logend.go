package mlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// LogEnds returns the log end offset (high watermark: the offset the next
// record will get) of every partition of the producer's topic, indexed by
// partition, asking each partition leader once for all the partitions it
// leads. It answers through the producer's client (no second client).
//
// The call is not cheap enough for every request: the API caches the
// answer and asks again only when a cursor is beyond it (api.LogEnds).
// ctx bounds the wait; sarama's own network timeouts bound the requests.
func (p *Producer) LogEnds(ctx context.Context) ([]int64, error) {
	type result struct {
		ends []int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ends, err := logEnds(p.client, p.topic)
		// A moved leader (or a topic just created) answers "not the
		// leader" once; logEnds refreshed the metadata, so ask again.
		for try := 1; err != nil && try < logEndTries && retriable(err); try++ {
			time.Sleep(time.Duration(try) * 50 * time.Millisecond)
			ends, err = logEnds(p.client, p.topic)
		}
		done <- result{ends, err}
	}()
	select {
	case r := <-done:
		return r.ends, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("while reading the log ends of %s: %w", p.topic, ctx.Err())
	}
}

// logEndTries bounds the attempts of one LogEnds call.
const logEndTries = 3

func retriable(err error) bool {
	var ke sarama.KError
	return errors.As(err, &ke) && (errors.Is(ke, sarama.ErrNotLeaderForPartition) || errors.Is(ke, sarama.ErrLeaderNotAvailable) ||
		errors.Is(ke, sarama.ErrUnknownTopicOrPartition) || errors.Is(ke, sarama.ErrFencedLeaderEpoch) || errors.Is(ke, sarama.ErrUnknownLeaderEpoch))
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
			_ = b.Close() // reconnects on next use, as sarama's GetOffset does
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
