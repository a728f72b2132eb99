package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
)

// MaxBatch bounds the records of one pipeline batch (one fetch's worth).
const MaxBatch = 1000

// fetchMinBytes is what makes the broker answer a fetch before FetchWait:
// a backlog, not a live stream (at 5,000 msg/s of 400 bytes, 256 KiB take
// about 130 ms to arrive).
const fetchMinBytes = 256 << 10

// DefaultBacklogLinger bounds the wait for the next record of a batch when
// the log says more are waiting but sarama has not handed them over yet.
const DefaultBacklogLinger = 5 * time.Millisecond

// GuardStore is what the start-up guard reads.
type GuardStore interface {
	PartitionState(ctx context.Context, part int32) (topicID string, maxOff int64, ok bool, err error)
}

// ErrTopicRecreated is returned when the stored state of a partition cannot
// come from the current topic: its id differs, or the persisted offset is
// beyond the log's end. seq is the offset, so consuming would reuse seqs.
var ErrTopicRecreated = errors.New("log topic was re-created or truncated")

// Consumer runs the consumer group that feeds the Processor.
type Consumer struct {
	Kafka    config.Kafka
	ClientID string
	// InstanceID, if set, makes this a static member of the group
	// (KIP-345): a process that restarts with the same id within the
	// session timeout gets its partitions back without a rebalance, so a
	// crash-restart stalls only its own partitions, and only until it is
	// back. It must be unique per process and stable across restarts (the
	// pod name). A static member leaves the group explicitly on shutdown
	// (sarama does not), so a rollout's new pods take over at once.
	InstanceID string
	Processor  *Processor
	Guard      GuardStore
	// Grace is how long a batch in progress may take to finish after
	// shutdown began before it is abandoned (handed back uncommitted).
	Grace time.Duration
	// BacklogLinger: see DefaultBacklogLinger (used when 0).
	BacklogLinger time.Duration
	Log           *slog.Logger

	ready  atomic.Bool
	joined atomic.Bool
	fatal  atomic.Pointer[error]
}

// Ready reports whether the consumer holds a live group session (false
// during a rebalance).
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Joined reports whether the consumer ever held a group session: the
// readiness of a process that also serves the API, which must not flap
// with rebalances.
func (c *Consumer) Joined() bool { return c.joined.Load() }

// Run consumes until ctx is done, then finishes the batch in progress
// (within Grace) and leaves the group. It returns an error on a fatal
// condition (topic mismatch or re-creation).
func (c *Consumer) Run(ctx context.Context) error {
	sc, err := mlog.SaramaConfig(c.Kafka, c.ClientID)
	if err != nil {
		return err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = 500 * time.Millisecond
	sc.Consumer.Return.Errors = true
	sc.Consumer.MaxProcessingTime = 30 * time.Second
	sc.Consumer.Fetch.Default = 4 << 20
	if c.Kafka.FetchWait > 0 {
		// The broker answers a fetch once fetchMinBytes are there or
		// FetchWait has passed: at live rates it waits, and every claim
		// gets FetchWait's records as one batch; a backlog is answered at
		// once. Without it, every produce request wakes the fetch, and a
		// batch holds a record or two: per-batch costs (the de-duplication
		// read, the timeline write, the push) per message.
		sc.Consumer.MaxWaitTime = c.Kafka.FetchWait
		sc.Consumer.Fetch.Min = fetchMinBytes
	}
	sc.ChannelBufferSize = MaxBatch
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	if c.InstanceID != "" {
		sc.Consumer.Group.InstanceId = c.InstanceID
	}
	client, err := sarama.NewClient(c.Kafka.Brokers, sc)
	if err != nil {
		return fmt.Errorf("while connecting the Kafka consumer: %w", err)
	}
	defer client.Close()
	group, err := sarama.NewConsumerGroupFromClient(c.Kafka.Group, client)
	if err != nil {
		return fmt.Errorf("while joining consumer group %s: %w", c.Kafka.Group, err)
	}
	defer func() {
		_ = group.Close()
		if c.InstanceID != "" {
			c.leaveStatic(client)
		}
	}()
	go func() {
		for err := range group.Errors() {
			c.Log.Warn("consumer group error", "err", err)
		}
	}()

	// work outlives ctx by Grace so the current batches can finish.
	work, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	stopWork := context.AfterFunc(ctx, func() {
		time.AfterFunc(c.Grace, cancelWork)
	})
	defer stopWork()
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	h := &handler{c: c, client: client, work: work, fail: cancelRun}
	for runCtx.Err() == nil {
		if err := group.Consume(runCtx, []string{c.Kafka.Topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			c.Log.Warn("consumer group session ended", "err", err)
			select {
			case <-runCtx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	c.ready.Store(false)
	if p := c.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

type handler struct {
	c      *Consumer
	client sarama.Client
	work   context.Context
	fail   context.CancelFunc
	loop   *sessionLoop // the current session's (sessions follow one another)
}

func (h *handler) setFatal(err error) {
	h.c.fatal.CompareAndSwap(nil, &err)
	h.c.Log.Error("pipeline cannot continue", "err", err)
	h.fail()
}

// Setup checks every claimed partition against the stored state before any
// record is processed. Only a topic that was re-created is fatal; a check
// that could not be made (a Cassandra read timeout, a partition leader not
// yet known) ends this session, and Run joins again after a second.
func (h *handler) Setup(sess sarama.ConsumerGroupSession) error {
	for topic, parts := range sess.Claims() {
		for _, part := range parts {
			if err := h.guard(sess.Context(), topic, part); err != nil {
				if errors.Is(err, ErrTopicRecreated) {
					h.setFatal(err)
				}
				return err
			}
		}
	}
	h.loop = h.startLoop(sess)
	h.c.ready.Store(true)
	h.c.joined.Store(true)
	h.c.Log.Info("pipeline session started", "claims", sess.Claims(), "generation", sess.GenerationID())
	return nil
}

func (h *handler) guard(ctx context.Context, topic string, part int32) error {
	if h.c.Guard == nil {
		return nil
	}
	id, maxOff, ok, err := h.c.Guard.PartitionState(ctx, part)
	if err != nil {
		return fmt.Errorf("while checking partition %d: %w", part, err)
	}
	if !ok {
		return nil
	}
	if id != "" && h.c.Processor.TopicID != "" && id != h.c.Processor.TopicID {
		return fmt.Errorf("%w: partition %d was persisted from topic id %s, %s now has id %s", ErrTopicRecreated, part, id, topic, h.c.Processor.TopicID)
	}
	end, err := h.client.GetOffset(topic, part, sarama.OffsetNewest)
	if err != nil {
		return fmt.Errorf("while reading end offset of partition %d: %w", part, err)
	}
	if maxOff >= end {
		return fmt.Errorf("%w: partition %d persisted up to offset %d but the log ends at %d", ErrTopicRecreated, part, maxOff, end)
	}
	return nil
}

// Cleanup runs once every ConsumeClaim has returned and before sarama's
// last commit of the session: it waits for the session's loop to finish
// the batch in progress and index what it delivered (within the grace), so
// their marks make that commit.
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error {
	if h.loop != nil {
		h.loop.wait()
		h.loop = nil
	}
	h.c.ready.Store(false)
	return nil
}

// ConsumeClaim forwards one partition's records to the session's loop
// (session.go), which batches them with the other partitions' records.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	h.loop.forward(claim)
	return nil
}

// leaveStatic removes this static member from the group, so its partitions
// move at once instead of after the session timeout.
func (c *Consumer) leaveStatic(client sarama.Client) {
	coord, err := client.Coordinator(c.Kafka.Group)
	if err == nil {
		id := c.InstanceID
		var resp *sarama.LeaveGroupResponse
		resp, err = coord.LeaveGroup(&sarama.LeaveGroupRequest{Version: 3, GroupId: c.Kafka.Group,
			Members: []sarama.MemberIdentity{{GroupInstanceId: &id}}})
		if err == nil && resp.Err != sarama.ErrNoError {
			err = resp.Err
		}
		if err == nil {
			for _, m := range resp.Members {
				if m.Err != sarama.ErrNoError && m.Err != sarama.ErrUnknownMemberId {
					err = m.Err
				}
			}
		}
	}
	if err != nil {
		c.Log.Warn("could not leave the consumer group; partitions move after the session timeout", "err", err)
	}
}

func record(m *sarama.ConsumerMessage) Record {
	return Record{Part: m.Partition, Off: m.Offset, Key: m.Key, Value: m.Value}
}
