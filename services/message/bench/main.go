// Command bench measures the message tier against the real stack, all in
// one run so the figures compare: raw Kafka produce rate, raw Cassandra
// single-row insert rate, API send rate and ack latency (open loop at a
// fixed rate, and closed loop at saturation), pipeline throughput (records
// persisted + routed per second), and the pull of 1,000 unread messages.
//
//	go run ./services/message/bench -pids kafka=PID,cassandra=PID
//
// Each phase uses its own topic and keyspace, dropped at the end. -pids
// reports the CPU seconds each server process used per phase (from
// /proc/PID/stat), which is what bounds a figure on a shared 2-core machine.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

var (
	flagPartitions = flag.Int("partitions", 12, "topic partitions")
	flagRaw        = flag.Duration("raw", 10*time.Second, "duration of each raw phase")
	flagRate       = flag.Int("rate", 1000, "open-loop send rate (sends/s)")
	flagSend       = flag.Duration("send", 20*time.Second, "duration of the send phases")
	flagConc       = flag.Int("conc", 64, "closed-loop concurrency")
	flagPipeN      = flag.Int("pipeline", 60000, "records for the pipeline phase")
	flagPulls      = flag.Int("pulls", 50, "unread pulls of 1,000 messages")
	flagPids       = flag.String("pids", "", "name=pid,... of server processes to report CPU for")
	flagCPUProf    = flag.String("cpuprofile", "", "write a CPU profile of the pipeline phase here")
	flagSendRole   = flag.String("send-role", "all", "role of the tier in the send phase: all (pipeline beside) or api")
	flagPhases     = flag.String("phases", "kafka,cassandra,send,pipeline,unread", "phases to run")
)

func main() {
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	fmt.Printf("# message bench %s, GOMAXPROCS=%d, partitions=%d\n", time.Now().UTC().Format(time.RFC3339), runtime.GOMAXPROCS(0), *flagPartitions)
	for _, ph := range strings.Split(*flagPhases, ",") {
		cpu := cpuNow()
		start := time.Now()
		switch ph {
		case "kafka":
			rawKafka()
		case "cassandra":
			rawCassandra()
		case "lookup":
			lookup()
		case "produce":
			syncProduce()
		case "send":
			sends()
		case "pipeline":
			pipelinePhase()
		case "unread":
			unread()
		default:
			fail(fmt.Errorf("unknown phase %s", ph))
		}
		reportCPU(ph, cpu, time.Since(start))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func baseConfig(tag string) config.Message {
	m, err := config.LoadMessage(func(string) string { return "" })
	if err != nil {
		fail(err)
	}
	m.Kafka.Brokers = strings.Split(envOr(testdeps.EnvKafka, "127.0.0.1:9092"), ",")
	m.Cassandra.Hosts = strings.Split(envOr(testdeps.EnvCassandra, "127.0.0.1:9042"), ",")
	m.Kafka.Topic = testdeps.Unique("bench_" + tag)
	m.Kafka.DLQTopic = m.Kafka.Topic + "_dlq"
	m.Kafka.Group = m.Kafka.Topic + "_g"
	m.Cassandra.Keyspace = testdeps.Unique("bench_" + tag)
	m.Kafka.Partitions = int32(*flagPartitions)
	m.HTTPAddr = "127.0.0.1:0"
	m.ShutdownGrace = 10 * time.Second
	m.NodeID = "bench"
	return m
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func setup(cfg config.Message) func() {
	if err := server.Bootstrap(cfg); err != nil {
		fail(err)
	}
	return func() {
		if a, err := mlog.NewAdmin(cfg.Kafka, "bench"); err == nil {
			_ = a.DeleteTopic(cfg.Topic)
			_ = a.DeleteTopic(cfg.DLQTopic)
			_ = a.DeleteGroup(cfg.Group)
			a.Close()
		}
		_ = store.DropKeyspace(cfg.Cassandra, cfg.Keyspace)
	}
}

func payload(i int) []byte {
	r := model.Record{V: 1, Kind: protocol.KindMessage, ConvID: model.ConvID(fmt.Sprintf("u%d", i%500), fmt.Sprintf("v%d", i%500)),
		From: fmt.Sprintf("u%d", i%500), AtMs: time.Now().UnixMilli(), MsgID: fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i),
		ClientMsgID: fmt.Sprint("c", i), Type: protocol.TypeText, Body: &protocol.Body{Text: "the quick brown fox jumps over the lazy dog, 64 bytes of text.."}}
	b, _ := r.Encode()
	return b
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + " ms"
}
