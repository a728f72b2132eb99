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
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/mlog"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/pipeline"
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
		case "lwt":
			lwt()
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

// rawKafka: idempotent acks=all async producer at full speed.
func rawKafka() {
	cfg := baseConfig("kafka")
	defer setup(cfg)()
	sc, err := mlog.ProducerConfig(cfg.Kafka, "bench-raw")
	if err != nil {
		fail(err)
	}
	sc.Producer.Flush.Frequency = time.Millisecond
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		fail(err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		for range ap.Successes() {
			acked.Add(1)
		}
		close(done)
	}()
	go func() {
		for err := range ap.Errors() {
			fail(err)
		}
	}()
	deadline := time.Now().Add(*flagRaw)
	start := time.Now()
	i := 0
	for time.Now().Before(deadline) {
		for range 1000 {
			v := payload(i)
			ap.Input() <- &sarama.ProducerMessage{Topic: cfg.Topic, Key: sarama.StringEncoder(fmt.Sprint("k", i%500)), Value: sarama.ByteEncoder(v)}
			i++
		}
	}
	ap.AsyncClose()
	<-done
	el := time.Since(start)
	fmt.Printf("raw_kafka_produce: %d records (%d B each), acks=all idempotent, %.0f records/s\n", acked.Load(), len(payload(0)), float64(acked.Load())/el.Seconds())
}

// closedLoop runs f with conc workers for d and reports rate and latency.
func closedLoop(name string, conc int, d time.Duration, f func(w, i int) error) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := f(w, i); err != nil {
					fail(err)
				}
				mu.Lock()
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("%s: %d in flight: %.0f ops/s, latency p50 %s p99 %s\n", name, conc, float64(len(lat))/el.Seconds(), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)))
}

// lwt: the send path's idempotency claim alone (INSERT IF NOT EXISTS).
func lwt() {
	cfg := baseConfig("lwt")
	defer setup(cfg)()
	st, err := store.Open(cfg.Cassandra, cfg.Topic, *flagPartitions)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	for _, conc := range []int{1, 16, 64} {
		closedLoop(fmt.Sprintf("cassandra_lwt_claim(conc=%d)", conc), conc, *flagRaw/2, func(w, i int) error {
			_, _, err := st.ClaimIdempotency(context.Background(), fmt.Sprint("s", w), fmt.Sprintf("c%d-%d-%d", conc, w, i),
				store.Idem{MsgID: "m", ConvID: "p:a:b", Hash: []byte{1}, CreatedMs: 1})
			return err
		})
	}
}

// syncProduce: the send path's produce alone (SyncProducer, acks=all).
func syncProduce() {
	cfg := baseConfig("prod")
	defer setup(cfg)()
	p, err := mlog.NewProducer(cfg.Kafka, cfg.Topic, "bench")
	if err != nil {
		fail(err)
	}
	defer p.Close()
	for _, conc := range []int{1, 16, 64} {
		closedLoop(fmt.Sprintf("kafka_sync_produce(conc=%d)", conc), conc, *flagRaw/2, func(w, i int) error {
			_, _, err := p.Produce(fmt.Sprint("k", w), payload(i))
			return err
		})
	}
}

// rawCassandra: single-row inserts shaped like a message row, 64 in flight.
func rawCassandra() {
	cfg := baseConfig("cass")
	defer setup(cfg)()
	st, err := store.Open(cfg.Cassandra, cfg.Topic, *flagPartitions)
	if err != nil {
		fail(err)
	}
	defer st.Close()
	s := st.Session()
	var n atomic.Int64
	deadline := time.Now().Add(*flagRaw)
	start := time.Now()
	var wg sync.WaitGroup
	body := `{"text":"the quick brown fox jumps over the lazy dog, 64 bytes of text.."}`
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				seq := int64(w)<<32 | int64(i)
				err := s.Query(`INSERT INTO messages (conv_id, bucket, seq, msg_id, client_msg_id, from_user, type, body, sent_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
					fmt.Sprintf("p:u%d:v%d", i%500, i%500), model.Bucket(seq), seq, "m", "c", "u", "text", body, int64(1)).Exec()
				if err != nil {
					fail(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("raw_cassandra_insert: %d single-row inserts, 64 in flight, %.0f rows/s\n", n.Load(), float64(n.Load())/el.Seconds())
}

type env struct {
	cfg   config.Message
	user  *auth.Signer
	url   string
	stop  func()
	hc    *http.Client
	route *countRouter
}

type countRouter struct {
	n     atomic.Int64
	first atomic.Int64 // unix ns of the first routed batch
}

func (r *countRouter) Route(_ context.Context, b []pipeline.Routed) error {
	r.first.CompareAndSwap(0, time.Now().UnixNano())
	r.n.Add(int64(len(b)))
	return nil
}

func startTier(cfg config.Message, role string) *env {
	dir, _ := os.MkdirTemp("", "msgbench")
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := []byte(hex.EncodeToString(raw)) // text: key files are newline-trimmed
	cfg.UserKeyFile = filepath.Join(dir, "user.key")
	_ = os.WriteFile(cfg.UserKeyFile, key, 0o600)
	signer, _ := auth.NewSigner(auth.KindUser, key)
	e := &env{cfg: cfg, user: signer, route: &countRouter{},
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 512}}}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{Role: role, Router: e.route, Listening: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		e.url = "http://" + a
	case err := <-done:
		fail(err)
	}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bench: tier stopped with", err)
		}
		_ = os.RemoveAll(dir)
	}
	for range 600 {
		if r, err := http.Get(e.url + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return e
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail(fmt.Errorf("tier not ready"))
	return nil
}

func (e *env) token(u string) string {
	t, err := e.user.Sign(u, time.Hour)
	if err != nil {
		fail(err)
	}
	return t
}

func (e *env) send(tok, to, cmid string) (time.Duration, error) {
	b, _ := json.Marshal(api.SendRequest{To: to, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: "the quick brown fox jumps over the lazy dog"}})
	req, _ := http.NewRequest("POST", e.url+"/v1/messages", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("send: %d %s", resp.StatusCode, rb)
	}
	return time.Since(start), nil
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

// sends: open loop at -rate for -send, then closed loop at -conc.
func sends() {
	cfg := baseConfig("send")
	defer setup(cfg)()
	e := startTier(cfg, *flagSendRole)
	fmt.Printf("  send phase: tier role %s\n", *flagSendRole)
	defer e.stop()
	toks := make([]string, 200)
	for i := range toks {
		toks[i] = e.token(fmt.Sprint("s", i))
	}
	// Open loop: a send every 1/rate, each in its own goroutine.
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	if *flagCPUProf != "" {
		f, _ := os.Create(*flagCPUProf + ".send")
		_ = pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	interval := time.Second / time.Duration(*flagRate)
	start := time.Now()
	n := int(flagSend.Seconds() * float64(*flagRate))
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := e.send(toks[i%len(toks)], fmt.Sprint("r", i%97), fmt.Sprint("o", i))
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if p := firstErr.Load(); p != nil {
		fmt.Printf("  first send error: %v\n", *p)
	}
	printStages("open loop")
	fmt.Printf("send_open_loop: target %d/s for %s: %d acked (%.0f/s), %d errors, ack latency p50 %s p99 %s max %s\n",
		*flagRate, *flagSend, len(lat), float64(len(lat))/el.Seconds(), errs.Load(), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(pct(lat, 1)))
	// Closed loop: -conc senders as fast as acks come, once the pipeline
	// has caught up with the open loop's records.
	for *flagSendRole == server.RoleAll && e.route.n.Load() < int64(len(lat)) {
		time.Sleep(20 * time.Millisecond)
	}
	lat = lat[:0]
	deadline := time.Now().Add(*flagSend / 2)
	start = time.Now()
	for w := range *flagConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				d, err := e.send(toks[w%len(toks)], fmt.Sprint("r", i%97), fmt.Sprintf("c%d-%d", w, i))
				if err != nil {
					errs.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el = time.Since(start)
	printStages("closed loop")
	fmt.Printf("send_closed_loop: %d in flight for %s: %.0f acked sends/s, ack latency p50 %s p99 %s\n",
		*flagConc, *flagSend/2, float64(len(lat))/el.Seconds(), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)))
}

// printStages prints p50/p99 (bucket upper bounds) of the send stages the
// in-process API recorded since the last call.
var lastStages = map[string][]uint64{}

func printStages(label string) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() != "imcluster_message_send_stage_seconds" {
			continue
		}
		var parts []string
		for _, m := range mf.GetMetric() {
			stage := m.GetLabel()[0].GetValue()
			h := m.GetHistogram()
			var counts []uint64
			var bounds []float64
			for _, b := range h.GetBucket() {
				counts = append(counts, b.GetCumulativeCount())
				bounds = append(bounds, b.GetUpperBound())
			}
			prev := lastStages[stage]
			lastStages[stage] = counts
			total := counts[len(counts)-1]
			if prev != nil {
				total -= prev[len(prev)-1]
			}
			q := func(p float64) string {
				for i, c := range counts {
					if prev != nil {
						c -= prev[i]
					}
					if float64(c) >= p*float64(total) {
						return fmt.Sprintf("≤%.1f ms", bounds[i]*1000)
					}
				}
				return "> max"
			}
			parts = append(parts, fmt.Sprintf("%s p50 %s p99 %s", stage, q(0.5), q(0.99)))
		}
		fmt.Printf("  send stages (%s): %s\n", label, strings.Join(parts, "; "))
	}
}

// pipelinePhase: -pipeline records pre-produced, then a pipeline-only tier
// drains them; records persisted + routed per second.
func pipelinePhase() {
	cfg := baseConfig("pipe")
	defer setup(cfg)()
	p, err := mlog.NewProducer(cfg.Kafka, cfg.Topic, "bench")
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

// unread: a user with 1,000 unread messages from 10 peers; time full pulls
// (10 pages of 100) and single pages.
func unread() {
	cfg := baseConfig("unread")
	defer setup(cfg)()
	e := startTier(cfg, server.RoleAll)
	defer e.stop()
	var wg sync.WaitGroup
	for p := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := e.token(fmt.Sprint("peer", p))
			for i := range 100 {
				if _, err := e.send(tok, "reader", fmt.Sprint("u", i)); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	for e.route.n.Load() < 1000 {
		time.Sleep(20 * time.Millisecond)
	}
	tok := e.token("reader")
	var full, page []time.Duration
	for range *flagPulls {
		start := time.Now()
		cursor, got := "", 0
		for {
			t := time.Now()
			req, _ := http.NewRequest("GET", e.url+"/v1/unread?limit=100&cursor="+cursor, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := e.hc.Do(req)
			if err != nil {
				fail(err)
			}
			var u api.UnreadResponse
			if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
				fail(err)
			}
			resp.Body.Close()
			page = append(page, time.Since(t))
			got += len(u.Events)
			if !u.HasMore {
				break
			}
			cursor = u.NextCursor
		}
		if got != 1000 {
			fail(fmt.Errorf("unread pull got %d", got))
		}
		full = append(full, time.Since(start))
	}
	fmt.Printf("unread_pull_1000: %d pulls of 1,000 messages (10 pages of 100): p50 %s p99 %s; per page p50 %s p99 %s\n",
		len(full), ms(pct(full, 0.5)), ms(pct(full, 0.99)), ms(pct(page, 0.5)), ms(pct(page, 0.99)))
}

// CPU accounting of the server processes named in -pids and of this one.
type cpuSample map[string]float64

func cpuNow() cpuSample {
	s := cpuSample{"bench": procCPU(os.Getpid())}
	if *flagPids == "" {
		return s
	}
	for _, kv := range strings.Split(*flagPids, ",") {
		name, pid, _ := strings.Cut(kv, "=")
		n, _ := strconv.Atoi(pid)
		s[name] = procCPU(n)
	}
	return s
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func reportCPU(phase string, before cpuSample, el time.Duration) {
	now := cpuNow()
	var parts []string
	for _, k := range []string{"bench", "kafka", "cassandra", "etcd"} {
		if b, ok := before[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f cores", k, (now[k]-b)/el.Seconds()))
		}
	}
	fmt.Printf("  cpu during %s (%s): %s\n", phase, el.Round(time.Millisecond), strings.Join(parts, ", "))
}
