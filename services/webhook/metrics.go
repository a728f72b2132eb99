package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	mBeforeSend = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcluster_webhook_before_send_seconds",
		Help:    "Time of one before_send call by outcome (allow, refuse, replace, failed).",
		Buckets: prometheus.ExponentialBuckets(0.00025, 1.5, 30),
	}, []string{"outcome"})
	mDeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_webhook_deliveries_total",
		Help: "Asynchronous webhook delivery attempts by event and result (ok, retry, dead_letter).",
	}, []string{"event", "result"})
	mDeliverySeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcluster_webhook_delivery_seconds",
		Help:    "Time of one asynchronous delivery attempt by event.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"event"})
	mLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imcluster_webhook_lag_seconds",
		Help: "Age of the last record the webhook dispatcher finished, per topic (0 when idle).",
	}, []string{"topic"})
	mSkipped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "imcluster_webhook_skipped_records_total",
		Help: "Log records the dispatcher could not decode (the pipeline dead-letters them).",
	})
	mInFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "imcluster_webhook_in_flight",
		Help: "Asynchronous events being delivered (bounded by claims x MaxBatch).",
	})
	mPresence = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "imcluster_webhook_presence_events_total",
		Help: "user_online/user_offline events produced by the presence watcher.",
	}, []string{"event"})
)
