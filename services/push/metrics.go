package push

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/internal/filewatch"
)

type metrics struct {
	accepted, logins, kicks, slowConsumers prometheus.Counter
	framesIn, framesOut                    prometheus.Counter
	delivered, missed                      prometheus.Counter
	acksForwarded, acksDropped             prometheus.Counter
	fdExhausted, refreshes                 prometheus.Counter
	closedWith                             *prometheus.CounterVec
	sends                                  *prometheus.CounterVec
	syncHints                              *prometheus.CounterVec
	blockingReaders                        prometheus.Gauge
	reg                                    prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "push", Name: name, Help: help})
	}
	m := &metrics{
		accepted:      c("connections_accepted_total", "WebSocket connections upgraded."),
		logins:        c("logins_total", "Successful device logins."),
		kicks:         c("kicks_total", "Sessions closed because the same terminal logged in again."),
		slowConsumers: c("slow_consumers_total", "Connections cut off because their send queue was full."),
		framesIn:      c("frames_in_total", "Frames read from devices."),
		framesOut:     c("frames_out_total", "Frames written to devices."),
		delivered:     c("deliveries_queued_total", "Event deliveries queued on a connection."),
		missed:        c("deliveries_missed_total", "Event deliveries whose device was not (or no longer) here."),
		acksForwarded: c("acks_forwarded_total", "Delivered acks posted to the message tier."),
		acksDropped:   c("acks_dropped_total", "Delivered acks the message tier did not take."),
		fdExhausted:   c("accept_fd_exhausted_total", "Accepts that failed because the process hit its open-files limit (EMFILE/ENFILE)."),
		refreshes:     c("token_refreshes_total", "Live sessions that refreshed their token."),
		closedWith: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "push",
			Name: "closed_total", Help: "Connections closed, by reason (error code)."}, []string{"reason"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "push",
			Name: "forwarded_sends_total", Help: "Sends forwarded to the message tier, by status class."}, []string{"status"}),
		syncHints: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "imcluster", Subsystem: "push",
			Name: "sync_hints_total", Help: "Sync frames sent to devices (pushes may have been dropped), by reason."}, []string{"reason"}),
		blockingReaders: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "imcluster", Subsystem: "push",
			Name: "blocking_readers", Help: "Connections read by a goroutine of their own (TLS, or no epoll) instead of the poller."}),
		reg: reg,
	}
	if reg != nil {
		reg.MustRegister(m.accepted, m.logins, m.kicks, m.slowConsumers, m.framesIn, m.framesOut,
			m.delivered, m.missed, m.acksForwarded, m.acksDropped, m.fdExhausted, m.refreshes, m.closedWith, m.sends,
			m.blockingReaders, m.syncHints)
		// The followed key and certificate files' reload metrics live in
		// the default registry; this server may serve another one.
		if err := filewatch.Register(reg); err != nil {
			panic(err)
		}
	}
	return m
}

func (m *metrics) gauges(s *Server) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "imcluster", Subsystem: "push",
		Name: "connections", Help: "Open device connections."}, func() float64 { return float64(s.count.Load()) }))
}
