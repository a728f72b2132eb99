package store

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// What the store asks of Cassandra, counted per request and per statement:
// Cassandra's CPU is mostly per request and per mutation, so these are
// the figures a change to the write or read path should move (rows
// written per message = statements of op write per persisted record).
var (
	mRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_store_requests_total",
		Help: "Requests sent to Cassandra (each attempt), by kind: read, write (one statement) or batch (an unlogged batch).",
	}, []string{"kind"})
	mStatements = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_store_statements_total",
		Help: "Statements sent to Cassandra (each attempt; a batch's statements one by one), by operation (read, write) and table.",
	}, []string{"op", "table"})
	mFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "imcluster_store_request_failures_total",
		Help: "Cassandra requests (attempts) that returned an error.",
	})
)

// The request counters by kind, resolved once: the observer runs on
// every request.
var (
	readRequests  = mRequests.WithLabelValues("read")
	writeRequests = mRequests.WithLabelValues("write")
	batchRequests = mRequests.WithLabelValues("batch")
)

// observer counts every query and batch of a session (gocql calls it on
// the request's goroutine, concurrently).
type observer struct{}

var _ gocql.QueryObserver = observer{}
var _ gocql.BatchObserver = observer{}

func (observer) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	c := countersOf(q.Statement)
	c.request.Inc()
	c.statements.Inc()
	if q.Err != nil {
		mFailures.Inc()
	}
}

func (observer) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	batchRequests.Inc()
	for _, s := range b.Statements {
		countersOf(s).statements.Inc()
	}
	if b.Err != nil {
		mFailures.Inc()
	}
}

// statementCounters is what one CQL text counts into: the request
// counter of its kind when sent on its own, and its table's statements.
type statementCounters struct {
	request, statements prometheus.Counter
}

// statementCache maps a statement's text to its counters, so the hot path
// parses each text once. Texts are the store's own (a few hundred with
// the conversation row's column combinations); past maxCachedStatements
// a text is parsed each time.
var (
	statementCache   sync.Map // string → statementCounters
	cachedStatements atomic.Int32
)

const maxCachedStatements = 2048

func countersOf(cql string) statementCounters {
	if c, ok := statementCache.Load(cql); ok {
		return c.(statementCounters)
	}
	op, table := classify(cql)
	c := statementCounters{request: writeRequests, statements: mStatements.WithLabelValues(op, table)}
	if op == "read" {
		c.request = readRequests
	}
	if cachedStatements.Add(1) <= maxCachedStatements {
		statementCache.Store(cql, c)
	}
	return c
}

// classify returns a statement's operation (read or write) and table
// ("other" when it names none the way the store writes them).
func classify(cql string) (op, table string) {
	f := strings.Fields(cql)
	word := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	var after string
	switch strings.ToUpper(word(0)) {
	case "SELECT":
		op, after = "read", "FROM"
	case "INSERT":
		op, after = "write", "INTO"
	case "UPDATE":
		return "write", tableName(word(1))
	case "DELETE":
		op, after = "write", "FROM"
	default:
		return "write", "other"
	}
	for i, w := range f {
		if strings.EqualFold(w, after) {
			return op, tableName(word(i + 1))
		}
	}
	return op, "other"
}

// tableName is the table a statement names in w ("feed", "conv_pins(a,"),
// "other" for none.
func tableName(w string) string {
	if i := strings.IndexByte(w, '('); i >= 0 {
		w = w[:i]
	}
	if w == "" {
		return "other"
	}
	return strings.ToLower(w)
}
