package filewatch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	mReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "file",
		Name: "reloads_total",
		Help: "Re-reads of followed files (signing keys, TLS pairs) by file and result: unchanged, changed or failed."},
		[]string{"file", "result"})
	mFailing = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "imcluster", Subsystem: "file",
		Name: "reload_failing",
		Help: "1 while a followed file is unreadable or invalid and its last good content stays in use (alert on it)."},
		[]string{"file"})
)

func init() { prometheus.MustRegister(mReloads, mFailing) }

// Register adds the package's metrics to reg, for a process that serves
// its own registry instead of the default one (where they always are).
func Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{mReloads, mFailing} {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

func observe(file string, changed bool, err error) {
	if file == "" {
		return
	}
	result, failing := "unchanged", 0.0
	switch {
	case err != nil:
		result, failing = "failed", 1
	case changed:
		result = "changed"
	}
	mReloads.WithLabelValues(file, result).Inc()
	mFailing.WithLabelValues(file).Set(failing)
}
