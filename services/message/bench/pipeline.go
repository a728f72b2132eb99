package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/message/store"
)

// pipelinePhase: -pipeline records pre-produced, then a pipeline-only tier
// drains them; records persisted + routed per second.
func pipelinePhase() {
	cfg := baseConfig("pipe")
	defer setup(cfg)()
	p, err := mlog.NewProducer(cfg.Kafka, cfg.Topic, "bench", api.SendDeadline)
	if err != nil {
		fail(err)
	}
	const chunk = 500
	for i := 0; i < *flagPipeN; i += chunk {
		keys, vals := make([]string, 0, chunk), make([][]byte, 0, chunk)
		for j := i; j < min(i+chunk, *flagPipeN); j++ {
			v := payload(j)
			var r model.Record
			_ = json.Unmarshal(v, &r)
			keys, vals = append(keys, r.ConvID), append(vals, v)
		}
		if err := p.ProduceBatch(keys, vals); err != nil {
			fail(err)
		}
	}
	p.Close()
	st, err := store.Open(cfg.Cassandra, cfg.Topic, *flagPartitions)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	var prof *os.File
	if *flagCPUProf != "" {
		prof, _ = os.Create(*flagCPUProf)
		_ = pprof.StartCPUProfile(prof)
	}
	cpu := cpuNow()
	start := time.Now()
	e := startTier(cfg, server.RolePipeline)
	for e.route.n.Load() < int64(*flagPipeN) {
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	steady := time.Since(time.Unix(0, e.route.first.Load()))
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	reportCPU("pipeline(drain)", cpu, el)
	e.stop()
	fmt.Printf("pipeline: %d records (500 conversations, %d partitions) persisted + routed in %s incl. start and group join: %.0f records/s; from the first routed batch: %.0f records/s\n",
		*flagPipeN, *flagPartitions, el.Round(time.Millisecond), float64(*flagPipeN)/el.Seconds(), float64(*flagPipeN)/steady.Seconds())
}
