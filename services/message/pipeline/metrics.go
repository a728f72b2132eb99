package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	mRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_pipeline_records_total",
		Help: "Log records handled by the pipeline, by result (persisted, duplicate, rejected, group_rejected, receipt_ignored, dead_letter, index_dropped).",
	}, []string{"result"})
	mBatchSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcluster_pipeline_stage_seconds",
		Help:    "Time per pipeline batch stage (persist: the timeline rows, route, index: the users' rows of one or more batches, total: from a batch's start to its index written).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"stage"})
	mBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "imcluster_pipeline_batch_records",
		Help:    "Records per pipeline batch.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	mBatchPartitions = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "imcluster_pipeline_batch_partitions",
		Help:    "Partitions whose records one pipeline batch holds (a batch spans the partitions the process consumes).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 8),
	})
	mRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_pipeline_retries_total",
		Help: "Transient failures retried with backoff, by stage.",
	}, []string{"stage"})
)

// mIndexLag is how long after its routing a batch's index rows were
// written: how far sync, the unread pull and the list trail the pushes.
var mIndexLag = promauto.NewHistogram(prometheus.HistogramOpts{
	Name:    "imcluster_pipeline_index_lag_seconds",
	Help:    "Time from a batch's routing to its users' rows (feed, conversation rows) being written.",
	Buckets: prometheus.ExponentialBuckets(0.01, 2, 10),
})

var mLateIndex = promauto.NewCounter(prometheus.CounterOpts{
	Name: "imcluster_pipeline_late_index_total",
	Help: "Index lots written more than 1.5 s after their routing (a backlog): the devices of their users that logged in meanwhile were told to sync.",
})

// mLag is each claimed partition's backlog: records in the log after the
// last one delivered (set per batch; removed when the claim ends, so a
// partition shows only on the process that holds it).
var mLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Name: "imcluster_pipeline_lag_records",
	Help: "Records of a partition in the log after the last one this process delivered, as of its latest batch.",
}, []string{"partition"})

var mReceiptLookups = promauto.NewCounter(prometheus.CounterOpts{
	Name: "imcluster_pipeline_receipt_lookups_total",
	Help: "Delivered receipts checked against the history in Cassandra (those the batch and the remembered last messages could not decide).",
})

var mLookups = promauto.NewCounter(prometheus.CounterOpts{
	Name: "imcluster_pipeline_msgid_lookups_total",
	Help: "msg_ids read from Cassandra for de-duplication (those not in the batch or the in-memory window).",
})

// Every series exists from the start (at 0), so dashboards and alerts see
// a rate of 0, not no data, before the first event.
func init() {
	for _, r := range []string{"persisted", "duplicate", "rejected", "group_rejected", "receipt_ignored", "dead_letter", "index_dropped"} {
		mRecords.WithLabelValues(r)
	}
	for _, s := range []string{"dedupe", "group_state", "persist", "index", "partition_state", "dead_letter"} {
		mRetries.WithLabelValues(s)
	}
}
