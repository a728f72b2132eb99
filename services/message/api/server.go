package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/protocol"
)

// Producer writes records to the log. Produce returns the record's
// partition and offset once the brokers acknowledged it with acks=all (an
// error: it may or may not be in the log), within the send deadline
// (mlog.CheckProducerConfig). Safe for concurrent use.
type Producer interface {
	Produce(key string, value []byte, headers ...mlog.Header) (int32, int64, error)
}

// Store is what the API reads in Cassandra (the send path reads only for a
// retry, LookupMessageID). Safe for concurrent use.
type Store interface {
	LookupMessageID(ctx context.Context, msgID string) (store.StoredID, bool, error)
	Message(ctx context.Context, conv string, seq int64) (protocol.Event, bool, error)
	Conversation(ctx context.Context, user, conv string) (store.ConvState, bool, error)
	// TimelineHas: conv's history holds a row at seq. A user's
	// conversation row trails the pushes by up to about a second (the
	// pipeline writes it after routing), so a read mark or ack beyond it
	// is checked here before it is refused.
	TimelineHas(ctx context.Context, conv string, seq int64) (bool, error)
	Conversations(ctx context.Context, user, after string, inclusive bool, limit int) ([]store.ConvState, error)
	History(ctx context.Context, conv string, before int64, limit int) ([]protocol.Event, bool, error)
	Sync(ctx context.Context, user string, cur model.SyncCursor, limit int) (store.SyncPage, error)
	Unread(ctx context.Context, user string, cur model.UnreadCursor, limit int) (store.UnreadPage, error)
	PersistedHeads(ctx context.Context) ([]int64, error)
	LoadGroup(ctx context.Context, group string) (*store.GroupState, error)
	UserGroups(ctx context.Context, user, after string, limit int) ([]store.UserGroup, string, error)
	CountUserGroups(ctx context.Context, user string, limit int) (int, error)
	PartitionState(ctx context.Context, part int32) (topicID string, maxOff int64, ok bool, err error)
}

// Bounds of the API.
const (
	DefaultPage     = 50
	MaxPage         = store.MaxPage
	smallBodyLimit  = 4 << 10
	envelopeBytes   = 2 << 10 // send request bytes beyond the message body
	maxPresenceList = 1000
	maxAcks         = protocol.MaxDeliveryBatch
)

// SendDeadline is how long a send may take before its answer: the
// producer is configured to finish or fail within it
// (mlog.CheckProducerConfig: 13.1 s at worst), and it is below the SDK's
// and the push tier's 15 s call timeouts, so their callers see the API's
// answer.
const SendDeadline = 14 * time.Second

// Server is the message tier's HTTP API.
type Server struct {
	Auth            *auth.Authenticator
	Store           Store
	Producer        Producer
	Presence        presence.Directory // nil: presence queries answer 503
	Partitions      int
	MaxMessageBytes int
	RecallWindow    time.Duration
	Log             *slog.Logger
	Now             func() time.Time
	// MaxInFlight bounds the requests served at once (0: DefaultMaxInFlight);
	// beyond it requests are refused at once with 503 unavailable and
	// Retry-After, instead of queueing without bound.
	MaxInFlight int
	// LogEnds, if set, lets sync answer 410 cursor_expired for a cursor
	// ahead of the log (the topic was re-created or the deployment restored
	// from an older backup, so offsets restarted); nil: not checked.
	LogEnds LogEnds
	// LogEndRefreshGap is the least time between two reads of LogEnds
	// (0: DefaultLogEndRefreshGap).
	LogEndRefreshGap time.Duration
	// Gate, if set, checks every send before it is produced (before_send
	// webhook, gate.go); nil: no check.
	Gate SendGate
	// MaxGroupMembers and MaxGroupsPerUser are the group limits (0:
	// config.DefaultGroupMaxMembers, config.DefaultGroupMaxPerUser).
	MaxGroupMembers  int
	MaxGroupsPerUser int

	members  memberCache
	inflight chan struct{}
	logEnds  *logEndCache
}

// DefaultMaxInFlight is the default bound of concurrent requests.
const DefaultMaxInFlight = 2048

var mRequests = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "imcluster_message_api_seconds",
	Help:    "Message API request latency by route and status.",
	Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
}, []string{"route", "status"})

// mSendStage times the stages of a send: the produce (acks=all) and a
// retry's lookup of its stored message.
var mSendStage = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "imcluster_message_send_stage_seconds",
	Help:    "Time per stage of a send (produce, retry_lookup).",
	Buckets: prometheus.ExponentialBuckets(0.00025, 1.5, 30),
}, []string{"stage"})

// mSends counts accepted sends by path: first (attempt <= 1, produced),
// retry_found (answered from the stored message), retry_produced.
var mSends = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "imcluster_message_sends_total",
	Help: "Accepted sends by path (first, retry_found, retry_produced).",
}, []string{"path"})

type handlerFunc func(w http.ResponseWriter, r *http.Request) *apiError

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	w.status = s
	w.ResponseWriter.WriteHeader(s)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = DefaultMaxInFlight
	}
	s.inflight = make(chan struct{}, s.MaxInFlight)
	if s.LogEnds != nil {
		if s.LogEndRefreshGap <= 0 {
			s.LogEndRefreshGap = DefaultLogEndRefreshGap
		}
		s.logEnds = &logEndCache{src: s.LogEnds, gap: s.LogEndRefreshGap}
	}
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: 200}
			select {
			case s.inflight <- struct{}{}:
				defer func() { <-s.inflight }()
			default:
				sw.Header().Set("Retry-After", "1")
				writeErr(sw, errf(http.StatusServiceUnavailable, protocol.ErrUnavailable, "too many requests in flight"))
				mRequests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
				return
			}
			if e := h(sw, r); e != nil {
				if e.status >= 500 {
					s.Log.Warn("request failed", "route", pattern, "code", e.code, "err", e.msg)
				}
				writeErr(sw, e)
			}
			mRequests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		})
	}
	for _, r := range s.routes() {
		handle(r.pattern, r.h)
	}
	handle("/", func(http.ResponseWriter, *http.Request) *apiError {
		return errf(http.StatusNotFound, protocol.ErrNotFound, "no such endpoint")
	})
	return mux
}

type route struct {
	pattern string
	h       handlerFunc
}

func (s *Server) routes() []route {
	return []route{
		{"POST /v1/messages", s.send},
		{"GET /v1/sync", s.sync},
		{"GET /v1/unread", s.unread},
		{"GET /v1/conversations", s.conversations},
		{"PATCH /v1/conversations/{conv}", s.setConvSettings},
		{"GET /v1/conversations/{conv}/messages", s.history},
		{"POST /v1/conversations/{conv}/read", s.read},
		{"POST /v1/conversations/{conv}/recall", s.recall},
		{"GET /v1/presence/{user}", s.presenceOne},
		{"POST /v1/presence/online", s.presenceMany},
		{"POST /v1/presence/terminals", s.presenceTerminals},
		{"POST " + protocol.DeliveredPath, s.delivered},
		{"POST /v1/groups", s.createGroup},
		{"GET /v1/groups", s.myGroups},
		{"GET /v1/groups/{group}", s.getGroup},
		{"PATCH /v1/groups/{group}", s.updateGroup},
		{"DELETE /v1/groups/{group}", s.dissolveGroup},
		{"GET /v1/groups/{group}/members", s.listMembers},
		{"POST /v1/groups/{group}/members", s.addMembers},
		{"DELETE /v1/groups/{group}/members/{user}", s.removeMember},
		{"PUT /v1/groups/{group}/members/{user}/role", s.setRole},
	}
}

func unavailable(err error) *apiError {
	return errf(http.StatusServiceUnavailable, protocol.ErrUnavailable, err.Error())
}
