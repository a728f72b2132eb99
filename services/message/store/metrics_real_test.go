package store_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/store"
)

// counterSum sums the series of the counter name whose labels include
// want, from the default registry.
func counterSum(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// The store counts what it asks of Cassandra: persisting one 1:1 message
// writes its history row, its msg_ids row and both participants' feed
// entries, and every statement is counted under its table.
func TestStoreMetricsCountStatements(t *testing.T) {
	cfg := msgtest.Config(t, 2)
	msgtest.Keyspace(t, cfg)
	st := msgtest.Store(t, cfg)
	tables := []string{"messages", "msg_ids", "feed"}
	before := map[string]float64{}
	for _, tb := range tables {
		before[tb] = counterSum(t, "imcluster_store_statements_total", map[string]string{"op": "write", "table": tb})
	}
	requests := counterSum(t, "imcluster_store_requests_total", nil)
	conv := model.ConvID("carol", "dave")
	if err := st.Persist(context.Background(), []store.Item{{Part: 0, Off: 7, Rec: msg(conv, "carol", "hi", 1000)}}); err != nil {
		t.Fatal(err)
	}
	for tb, want := range map[string]float64{"messages": 1, "msg_ids": 1, "feed": 2} {
		if got := counterSum(t, "imcluster_store_statements_total", map[string]string{"op": "write", "table": tb}) - before[tb]; got != want {
			t.Errorf("statements written to %s: %v, want %v", tb, got, want)
		}
	}
	if got := counterSum(t, "imcluster_store_requests_total", nil) - requests; got < 1 || got > 12 {
		t.Errorf("requests for one message: %v, want 1..12", got)
	}
}
