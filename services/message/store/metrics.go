package store

import (
	"context"
	"strings"
	"sync"

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

func init() {
	for _, k := range []string{"read", "write", "batch"} {
		mRequests.WithLabelValues(k)
	}
}

// observer counts every query and batch of a session (gocql calls it on
// the request's goroutine, concurrently).
type observer struct{}

var _ gocql.QueryObserver = observer{}
var _ gocql.BatchObserver = observer{}

func (observer) ObserveQuery(_ context.Context, q gocql.ObservedQuery) {
	c := countersOf(q.Statement)
	if c.read {
		mRequests.WithLabelValues("read").Inc()
	} else {
		mRequests.WithLabelValues("write").Inc()
	}
	c.statements.Inc()
	if q.Err != nil {
		mFailures.Inc()
	}
}

func (observer) ObserveBatch(_ context.Context, b gocql.ObservedBatch) {
	mRequests.WithLabelValues("batch").Inc()
	for _, s := range b.Statements {
		countersOf(s).statements.Inc()
	}
	if b.Err != nil {
		mFailures.Inc()
	}
}

// statementCounters is what one CQL text counts into.
type statementCounters struct {
	read       bool
	statements prometheus.Counter
}

// statementCache maps a statement's text to its counters, so the hot path
// parses each text once. Texts are the store's own (a few hundred with
// the conversation row's column combinations); past maxCachedStatements
// a text is parsed each time.
var statementCache sync.Map // string → statementCounters

const maxCachedStatements = 2048

var cachedStatements struct {
	sync.Mutex
	n int
}

func countersOf(cql string) statementCounters {
	if c, ok := statementCache.Load(cql); ok {
		return c.(statementCounters)
	}
	op, table := classify(cql)
	c := statementCounters{read: op == "read", statements: mStatements.WithLabelValues(op, table)}
	cachedStatements.Lock()
	if cachedStatements.n < maxCachedStatements {
		cachedStatements.n++
		statementCache.Store(cql, c)
	}
	cachedStatements.Unlock()
	return c
}

// classify returns a statement's operation (read or write) and table
// ("other" when it names none the way the store writes them).
func classify(cql string) (op, table string) {
	f := strings.Fields(cql)
	if len(f) == 0 {
		return "write", "other"
	}
	var after string
	switch strings.ToUpper(f[0]) {
	case "SELECT":
		op, after = "read", "FROM"
	case "INSERT":
		op, after = "write", "INTO"
	case "UPDATE":
		return "write", tableName(f[1:min(2, len(f))])
	case "DELETE":
		op, after = "write", "FROM"
	default:
		return "write", "other"
	}
	for i, w := range f {
		if strings.EqualFold(w, after) {
			return op, tableName(f[i+1 : min(i+2, len(f))])
		}
	}
	return op, "other"
}

func tableName(f []string) string {
	if len(f) == 0 {
		return "other"
	}
	t := strings.TrimRight(f[0], "(")
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = t[:i]
	}
	if t == "" {
		return "other"
	}
	return strings.ToLower(t)
}
