package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/webhook/wire"
)

// EventsTopic is the topic of the presence events (user_online,
// user_offline) beside the message log topic.
func EventsTopic(logTopic string) string { return logTopic + ".webhook" }

// DeadLetterTopic is the webhook dead-letter topic beside the log topic.
func DeadLetterTopic(logTopic string) string { return logTopic + ".webhook.dlq" }

// Bounds of the dispatcher.
const (
	// MaxBatch bounds the records one partition claim takes at once; with
	// at most two events per record, a claim holds at most 2*MaxBatch
	// events in memory.
	MaxBatch = 64
	// DefaultConcurrency bounds the deliveries in flight per claim.
	DefaultConcurrency = 16
)

// Dispatcher delivers the asynchronous webhook events at least once from
// its own consumer group (Hook.Group) over the message log and the events
// topic. Set the fields, then Run.
type Dispatcher struct {
	Kafka  config.Kafka // Topic: the message log
	Hook   config.Webhook
	Secret []byte
	// Directory decides offline_message at consume time (nil: no
	// offline_message events). DirectoryReady, if set, is awaited (at most
	// 30 s) before consuming, so the first records are not judged against
	// an empty cache.
	Directory      presence.Directory
	DirectoryReady func(ctx context.Context) error
	// Groups, if set, gives group messages their members (groups.go):
	// offline_message goes to each member without a device, and a
	// message whose sender was not a member at its seq (the pipeline
	// rejects it) gets no event. Nil: group messages get after_send only.
	Groups GroupMembers
	// Etcd and EtcdPrefix, if set and Hook wants user_online or
	// user_offline, run the presence watcher (one leader among all
	// dispatchers of the cluster).
	Etcd       *clientv3.Client
	EtcdPrefix string
	ClientID   string
	Log        *slog.Logger
	// Tuning (0: defaults).
	BackoffMin, BackoffMax time.Duration
	Concurrency            int
	Now                    func() time.Time

	hc          *http.Client
	dlq         *mlog.Producer
	events      *mlog.Producer
	ready       atomic.Bool
	claims      atomic.Int64 // claims of the current session not yet consuming
	watcher     *presenceWatcher
	setupErr    atomic.Pointer[error]
	admin       sarama.ClusterAdmin
	adminClient sarama.Client
}

// Ready reports whether the dispatcher holds a group session and every
// claimed partition is being consumed.
func (d *Dispatcher) Ready() bool { return d.ready.Load() && d.claims.Load() == 0 }

// Health is Ready as a readiness probe.
func (d *Dispatcher) Health() error {
	if !d.Ready() {
		if p := d.setupErr.Load(); p != nil {
			return fmt.Errorf("webhook dispatcher not consuming: %w", *p)
		}
		return errors.New("webhook dispatcher has no consumer group session")
	}
	return nil
}

// Setup creates the webhook topics if missing (idempotent): the events
// topic with the log's partition count, the dead-letter topic likewise.
func Setup(k config.Kafka, clientID string) error {
	a, err := mlog.NewAdmin(k, clientID)
	if err != nil {
		return err
	}
	defer a.Close()
	for _, t := range []string{EventsTopic(k.Topic), DeadLetterTopic(k.Topic)} {
		if _, ok, err := a.Describe(t); err != nil {
			return err
		} else if !ok {
			if _, err := a.EnsureTopic(t, k.Partitions, k.ReplicationFactor, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run consumes until ctx is done. Deliveries in progress are abandoned at
// shutdown; their records are not marked, so they are delivered again
// (at least once). A failure to set up (topics, producers) is retried
// every 5 s while Health reports it: a webhook problem never stops the
// message process that hosts the dispatcher. Run returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	for {
		err := d.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.setupErr.Store(&err)
		d.Log.Warn("webhook dispatcher failed; retrying in 5s", "err", err)
		sleep(ctx, 5*time.Second)
	}
}

func (d *Dispatcher) run(ctx context.Context) error {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.BackoffMin <= 0 {
		d.BackoffMin = DefaultBackoffMin
	}
	if d.BackoffMax <= 0 {
		d.BackoffMax = DefaultBackoffMax
	}
	if d.Concurrency <= 0 {
		d.Concurrency = DefaultConcurrency
	}
	if d.hc == nil {
		d.hc = &http.Client{Transport: newTransport()}
	}
	if err := Setup(d.Kafka, d.ClientID+"-webhook-admin"); err != nil {
		return fmt.Errorf("while creating the webhook topics: %w", err)
	}
	var err error
	if d.dlq, err = mlog.NewProducer(d.Kafka, DeadLetterTopic(d.Kafka.Topic), d.ClientID+"-webhook-dlq", api.SendDeadline); err != nil {
		return err
	}
	defer d.dlq.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	if d.Etcd != nil && (d.Hook.Wants(config.WebhookUserOnline) || d.Hook.Wants(config.WebhookUserOffline)) {
		if d.events, err = mlog.NewProducer(d.Kafka, EventsTopic(d.Kafka.Topic), d.ClientID+"-webhook-presence", api.SendDeadline); err != nil {
			return err
		}
		defer d.events.Close()
		d.watcher = &presenceWatcher{cli: d.Etcd, prefix: d.EtcdPrefix, id: d.ClientID, prod: d.events, log: d.Log, now: d.now}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Add(1)
		go func() { defer wg.Done(); d.watcher.run(wctx) }()
	}
	if d.DirectoryReady != nil {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := d.DirectoryReady(rctx); err != nil && ctx.Err() == nil {
			d.Log.Warn("presence not listed yet; offline_message judged against the cache as it is", "err", err)
		}
		cancel()
	}
	return d.consume(ctx)
}

func (d *Dispatcher) consume(ctx context.Context) error {
	sc, err := mlog.SaramaConfig(d.Kafka, d.ClientID+"-webhook")
	if err != nil {
		return err
	}
	// A new group starts at the log's end: configuring a webhook on a
	// running cluster does not replay its history to the receiver.
	sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Return.Errors = true
	// A claim may wait on a failing receiver for its whole retry budget.
	sc.Consumer.MaxProcessingTime = time.Hour
	sc.ChannelBufferSize = MaxBatch
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	sc.Consumer.Group.Session.Timeout = 10 * time.Second
	sc.Consumer.Group.Heartbeat.Interval = 3 * time.Second
	group, err := sarama.NewConsumerGroup(d.Kafka.Brokers, d.Hook.Group, sc)
	if err != nil {
		return fmt.Errorf("while joining consumer group %s: %w", d.Hook.Group, err)
	}
	defer group.Close()
	// A second client reads the group's committed offsets and the log ends
	// for Setup (an admin closes its client: not the group's).
	ac, err := sarama.NewClient(d.Kafka.Brokers, sc)
	if err != nil {
		return fmt.Errorf("while connecting the webhook admin client: %w", err)
	}
	d.admin, err = sarama.NewClusterAdminFromClient(ac)
	if err != nil {
		ac.Close()
		return fmt.Errorf("while connecting the webhook admin client: %w", err)
	}
	d.adminClient = ac
	defer d.admin.Close()
	go func() {
		for err := range group.Errors() {
			d.Log.Warn("webhook consumer group error", "err", err)
		}
	}()
	topics := []string{d.Kafka.Topic, EventsTopic(d.Kafka.Topic)}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, topics, (*handler)(d)); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			d.Log.Warn("webhook consumer session ended", "err", err)
			sleep(ctx, time.Second)
		}
	}
	d.ready.Store(false)
	return ctx.Err()
}

type handler Dispatcher

// Setup pins the start of every claimed partition the group never
// committed: it commits the partition's current end before consuming, and
// the claim starts there. Without it a dispatcher that died on its first
// batch (receiver down) would leave no offset, and the next one would
// start at the then log end: the stuck batch and everything after it
// would be skipped.
func (h *handler) Setup(sess sarama.ConsumerGroupSession) error {
	n := 0
	for _, parts := range sess.Claims() {
		n += len(parts)
	}
	committed, err := h.admin.ListConsumerGroupOffsets(h.Hook.Group, sess.Claims())
	if err != nil {
		return fmt.Errorf("while reading the webhook group's offsets: %w", err)
	}
	pinned := 0
	for topic, parts := range sess.Claims() {
		for _, p := range parts {
			if b := committed.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError && b.Offset >= 0 {
				continue
			}
			end, err := h.adminClient.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return fmt.Errorf("while reading the end of %s/%d: %w", topic, p, err)
			}
			sess.MarkOffset(topic, p, end, "")
			pinned++
		}
	}
	if pinned > 0 {
		sess.Commit()
		h.Log.Info("webhook group starts at the log end", "partitions", pinned)
	}
	h.claims.Store(int64(n))
	h.ready.Store(true)
	h.Log.Info("webhook dispatcher session started", "claims", sess.Claims())
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error {
	h.ready.Store(false)
	return nil
}

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	d := (*Dispatcher)(h)
	h.claims.Add(-1) // the claim's offset is resolved: it is consuming
	ctx := sess.Context()
	msgs := claim.Messages()
	for {
		var batch []*sarama.ConsumerMessage
		select {
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		case <-ctx.Done():
			return nil
		}
	more:
		for len(batch) < MaxBatch {
			select {
			case m, ok := <-msgs:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		if !d.deliverAll(ctx, d.eventsOf(ctx, batch)) {
			return nil // not marked: consumed again by whoever gets the partition
		}
		last := batch[len(batch)-1]
		sess.MarkMessage(last, "")
		if age := time.Since(last.Timestamp); claim.HighWaterMarkOffset() > last.Offset+1 {
			mLag.WithLabelValues(last.Topic).Set(age.Seconds())
		} else {
			mLag.WithLabelValues(last.Topic).Set(0)
		}
	}
}

// eventsOf turns a batch of records into the events the hook wants, each
// ID once (a retried send's second copy in the log carries the first's
// msg_id: the receiver gets it once per batch, and de-duplicates by ID
// across batches).
func (d *Dispatcher) eventsOf(ctx context.Context, batch []*sarama.ConsumerMessage) []*wire.Event {
	var out []*wire.Event
	seen := map[string]bool{}
	add := func(ev *wire.Event) {
		if d.Hook.Wants(ev.Type) && !seen[ev.ID] {
			seen[ev.ID] = true
			out = append(out, ev)
		}
	}
	for _, m := range batch {
		if m.Topic != d.Kafka.Topic {
			var ev wire.Event
			if err := json.Unmarshal(m.Value, &ev); err != nil || ev.ID == "" {
				mSkipped.Inc()
				continue
			}
			add(&ev)
			continue
		}
		rec, err := model.Decode(m.Value, model.MaxBodyCeiling)
		if err != nil {
			mSkipped.Inc()
			continue
		}
		for _, ev := range d.recordEvents(ctx, &rec, m.Offset) {
			add(ev)
		}
	}
	return out
}

// recordEvents are the events of one log record at offset (its seq).
func (d *Dispatcher) recordEvents(ctx context.Context, rec *model.Record, off int64) []*wire.Event {
	switch rec.Kind {
	case protocol.KindMessage:
		if rec.IsGroup() && d.Groups != nil {
			return d.groupMessageEvents(ctx, rec, off)
		}
		msg := rec.Event(off).Message
		to := rec.To()
		evs := []*wire.Event{{Type: config.WebhookAfterSend, ID: rec.MsgID + ":" + config.WebhookAfterSend, AtMs: rec.AtMs,
			ConvID: rec.ConvID, Seq: off, From: rec.From, To: to, Message: msg}}
		// offline_message: decided now, from the presence cache (see doc.go).
		if to != "" && d.Directory != nil && d.Hook.Wants(config.WebhookOfflineMessage) && len(d.Directory.Sessions(to)) == 0 {
			evs = append(evs, &wire.Event{Type: config.WebhookOfflineMessage, ID: rec.MsgID + ":" + config.WebhookOfflineMessage,
				AtMs: rec.AtMs, ConvID: rec.ConvID, Seq: off, From: rec.From, To: to, UserID: to, Message: msg})
		}
		return evs
	case protocol.KindRead:
		return []*wire.Event{{Type: config.WebhookAfterRead, AtMs: rec.AtMs, ConvID: rec.ConvID, Seq: off, UserID: rec.From,
			DeviceID: rec.DeviceID, RefSeq: rec.RefSeq,
			ID: rec.ConvID + ":" + rec.From + ":" + strconv.FormatInt(rec.RefSeq, 10) + ":" + config.WebhookAfterRead}}
	case protocol.KindRecall:
		return []*wire.Event{{Type: config.WebhookAfterRecall, AtMs: rec.AtMs, ConvID: rec.ConvID, Seq: off, From: rec.From,
			DeviceID: rec.DeviceID, RefSeq: rec.RefSeq,
			ID: rec.ConvID + ":" + strconv.FormatInt(rec.RefSeq, 10) + ":" + config.WebhookAfterRecall}}
	}
	return nil
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func isPermanent(err error) bool { return errors.Is(err, errPermanent) }
