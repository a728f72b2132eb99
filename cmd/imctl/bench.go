package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
)

type benchOpts struct {
	users       int
	rate        float64
	duration    time.Duration
	concurrency int
	settle      time.Duration
	serverPIDs  string
	connectPar  int
	hold        time.Duration
	metrics     string
	jsonOut     bool
	runID       string
	textBytes   int
	sendVia     string
	groupSize   int
	ack         bool // clients acknowledge events (delivered receipts)
}

// BenchResult is imctl bench's JSON output.
type BenchResult struct {
	RunID       string  `json:"run_id"`
	Date        string  `json:"date"`
	Users       int     `json:"users"`
	PushNodes   int     `json:"push_nodes"` // distinct push pods reached: node ids of the welcome frames (a URL may be a Service over many pods)
	PushURLs    int     `json:"push_urls"`  // --push URLs the connections were spread over
	Connected   int     `json:"connected"`
	ConnectErrs int     `json:"connect_errors"`
	FDLimit     uint64  `json:"fd_limit"`
	FDLimitHit  bool    `json:"fd_limit_hit"`
	ConnectSecs float64 `json:"connect_seconds"`

	RateTarget   float64 `json:"rate_target"`
	SendVia      string  `json:"send_via"`
	DurationSecs float64 `json:"duration_seconds"`
	Sent         int64   `json:"sent"`
	Acked        int64   `json:"acked"`
	SendErrors   int64   `json:"send_errors"`
	Delivered    int64   `json:"delivered"`
	Lost         int64   `json:"lost"`
	Duplicated   int64   `json:"duplicated"`
	Reordered    int64   `json:"reordered"`
	AckedPerSec  float64 `json:"acked_per_sec"`
	DelivPerSec  float64 `json:"delivered_per_sec"`

	SendAckMs     Percentiles `json:"send_ack_ms"`
	SendDeliverMs Percentiles `json:"send_deliver_ms"`
	// Group mode (--group-size): every message goes to the other members'
	// devices; Delivered, Lost and Duplicated count deliveries, and
	// SendDeliverAllMs is the time until the last member got it.
	GroupSize        int         `json:"group_size,omitempty"`
	Groups           int         `json:"groups,omitempty"`
	SendDeliverAllMs Percentiles `json:"send_deliver_all_ms,omitempty"`

	// Server CPU over the window from the first send to the last
	// delivery (or the end of --settle): every server process of the
	// stack found on this machine (message, push, Kafka, Cassandra, etcd).
	ServerCPU      []ProcessCPU `json:"server_cpu,omitempty"`
	CPUPerMsgMs    float64      `json:"cpu_ms_per_delivered_message,omitempty"`
	CPUWindowSecs  float64      `json:"cpu_window_seconds,omitempty"`
	ServerCPUCores float64      `json:"server_cpu_cores,omitempty"`
	// ClientCPUCores is this load generator's own CPU over the same
	// window: on a machine that runs the stack too, what the servers
	// competed with.
	ClientCPUCores float64 `json:"client_cpu_cores,omitempty"`

	Memory []NodeMemory `json:"push_memory,omitempty"`
	Notes  []string     `json:"notes,omitempty"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// NodeMemory is one push node's memory before and after the connections.
type NodeMemory struct {
	URL             string  `json:"metrics_url"`
	Connections     int     `json:"connections"`
	RSSBeforeBytes  int64   `json:"rss_before_bytes"`
	RSSAfterBytes   int64   `json:"rss_after_bytes"`
	HeapBeforeBytes int64   `json:"heap_inuse_before_bytes"`
	HeapAfterBytes  int64   `json:"heap_inuse_after_bytes"`
	Goroutines      int64   `json:"goroutines"`
	OpenFDs         int64   `json:"open_fds"`
	MaxFDs          int64   `json:"max_fds"`
	FDExhausted     int64   `json:"accept_fd_exhausted"`
	RSSPerConnKiB   float64 `json:"rss_per_conn_kib"`
	HeapPerConnKiB  float64 `json:"heap_per_conn_kib"`
}

func init() {
	var o benchOpts
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "connect N users across the push nodes, send at a rate through the real API, report loss and latency",
		Long: `bench connects --users users (one device each, round-robin over --push),
then sends --rate messages/s for --duration through the message API (user i
to user i+1), and reports sent, acked, delivered (by push), lost, duplicated
and reordered counts, send-ack and send→deliver latency percentiles, and,
with --push-metrics, each push node's RSS and heap growth per connection.

With --send-via ws the messages go as send frames over each sender's own
WebSocket instead (the push node forwards them to the message API with the
same idempotency and ack meaning), so both send paths can be measured.

With --rate 0 it only connects, holds the connections idle for --hold, and
measures memory per idle connection.

One process can hold at most as many sockets as its open-files limit; bench
checks the limit first and reports clearly when it is hit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.IntVar(&o.users, "users", 100, "users to connect (one device each)")
	f.Float64Var(&o.rate, "rate", 100, "messages per second (0: connect only, measure idle memory)")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send")
	f.IntVar(&o.concurrency, "concurrency", 256, "sends in flight at most")
	f.DurationVar(&o.settle, "settle", 10*time.Second, "how long to wait for deliveries after the last send")
	f.StringVar(&o.serverPIDs, "server-pids", "", "name=pid,... of the server processes whose CPU to count (default: every message, push, Kafka, Cassandra and etcd process on this machine)")
	f.IntVar(&o.connectPar, "connect-parallelism", 64, "logins in flight at most")
	f.DurationVar(&o.hold, "hold", 5*time.Second, "with --rate 0: how long to hold the idle connections before measuring")
	f.StringVar(&o.metrics, "push-metrics", "", "push nodes' metrics base URLs, comma-separated (for memory per connection)")
	f.BoolVar(&o.jsonOut, "json", false, "print the result as JSON on stdout")
	f.StringVar(&o.runID, "run-id", "", "user name prefix (default: bench-<time>); the same id again reuses the users and their conversations")
	f.IntVar(&o.textBytes, "text-bytes", 64, "message text size")
	f.IntVar(&o.groupSize, "group-size", 0, "group mode: put the users in groups of this size (users/size groups) and send group messages, each delivered to every other member (0: 1:1, user i to user i+1)")
	f.BoolVar(&o.ack, "ack", false, "acknowledge every event received, as the SDKs do by default: each 1:1 message then also costs a delivered receipt (the push node's ack batch, a log record, the sender's feed entry and conversation row); off, the figures are of the messages alone")
	f.StringVar(&o.sendVia, "send-via", viaHTTP, "send path: http (the message API) or ws (a send frame on the sender's socket, forwarded by its push node)")
	rootCmd.AddCommand(cmd)
}

type sentMsg struct {
	start, acked, delivered time.Time // delivered: to every expected receiver
	ok                      bool
	deliveries              int32
	expect                  int32        // receivers (1 for 1:1)
	receivers               map[int]bool // who got it (under sentMu)
}

func runBench(ctx context.Context, o benchOpts) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.runID == "" {
		o.runID = "bench-" + time.Now().Format("150405")
	}
	if o.sendVia != viaHTTP && o.sendVia != viaWS {
		return fmt.Errorf("--send-via must be %s or %s, not %q", viaHTTP, viaWS, o.sendVia)
	}
	res := BenchResult{RunID: o.runID, Date: time.Now().UTC().Format(time.RFC3339), Users: o.users,
		RateTarget: o.rate, SendVia: o.sendVia, PushURLs: len(pushURLs())}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	// Open files: every connection is a socket in this process.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if lim.Cur < lim.Max {
			lim.Cur = lim.Max
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
		res.FDLimit = lim.Cur
		need := uint64(o.users) + uint64(o.concurrency) + 64
		if need > lim.Cur {
			msg := fmt.Sprintf("OPEN-FILES LIMIT: %d users need about %d file descriptors in this process, the limit is %d (hard %d); "+
				"connections beyond it will fail with EMFILE and the figures would not be for %d connections. "+
				"Run several bench processes with fewer --users each, or raise the limit.", o.users, need, lim.Cur, lim.Max, o.users)
			logf("imctl bench: %s", msg)
			res.Notes = append(res.Notes, msg)
			res.FDLimitHit = true
		}
	}
	if o.metrics != "" {
		for _, u := range strings.Split(o.metrics, ",") {
			u = strings.TrimRight(strings.TrimSpace(u), "/")
			m, err := scrape(u)
			if err != nil {
				return fmt.Errorf("push metrics %s: %w", u, err)
			}
			res.Memory = append(res.Memory, NodeMemory{URL: u, RSSBeforeBytes: m["process_resident_memory_bytes"], HeapBeforeBytes: m["go_memstats_heap_inuse_bytes"]})
		}
	}
	if g.userKey == "" {
		return errors.New("bench mints user tokens: set --user-key-file (or IM_AUTH_USER_KEY_FILE)")
	}
	signer, err := fileSigner(auth.KindUser, g.userKey)
	if err != nil {
		return err
	}

	// Connect.
	users := make([]string, o.users)
	tokens := make([]string, o.users)
	for i := range users {
		users[i] = fmt.Sprintf("%s-%d", o.runID, i)
		if tokens[i], err = signer.Sign(users[i], 6*time.Hour); err != nil {
			return err
		}
	}
	var (
		sentMu    sync.Mutex
		sent      = map[string]*sentMsg{}
		delivered atomic.Int64
		dups      atomic.Int64
		reordered atomic.Int64
		lastSeqMu sync.Mutex
		lastSeq   = map[string]int64{}
	)
	var delivLat []time.Duration // every delivery's send→deliver (under sentMu)
	onEvent := func(meIdx int, ev protocol.Event) {
		// Count what reaches the recipient, or in group mode every other
		// member (the sender's own device is excepted by routing; any
		// other device of the sender would be an echo, not a delivery).
		me := users[meIdx]
		if ev.Kind != protocol.KindMessage || ev.Message == nil || ev.Message.From == me || o.groupSize == 0 && ev.Message.To != me {
			return
		}
		now := time.Now()
		lastSeqMu.Lock()
		key := ev.ConvID + "\x00" + me // order is per receiver
		if last, ok := lastSeq[key]; ok && ev.Seq < last {
			reordered.Add(1)
		} else {
			lastSeq[key] = ev.Seq
		}
		lastSeqMu.Unlock()
		sentMu.Lock()
		defer sentMu.Unlock()
		m := sent[ev.Message.ClientMsgID]
		if m == nil {
			return
		}
		if m.receivers[meIdx] {
			dups.Add(1)
			return
		}
		m.receivers[meIdx] = true
		delivLat = append(delivLat, now.Sub(m.start))
		if m.deliveries++; m.deliveries == m.expect {
			m.delivered = now
		}
		delivered.Add(1)
	}
	urls := pushURLs()
	clients := make([]*client.Client, o.users)
	var connected, connErrs, emfile atomic.Int64
	var nodesMu sync.Mutex
	nodes := map[string]bool{} // node ids from the welcome frames
	connStart := time.Now()
	sem := make(chan struct{}, o.connectPar)
	var wg sync.WaitGroup
	stopProgress := progress(func() string {
		return fmt.Sprintf("connecting: %d/%d connected, %d errors", connected.Load(), o.users, connErrs.Load())
	})
	for i := range users {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c := client.New(client.Config{URLs: []string{urls[i%len(urls)]}, Token: tokens[i], DeviceID: "d0", Terminal: "bench",
				NoSync: true, NoAutoAck: !o.ack, TLS: g.tls, OnEvent: func(ev protocol.Event) { onEvent(i, ev) }})
			c.Start()
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := c.WaitConnected(cctx)
			cancel()
			if err != nil {
				connErrs.Add(1)
				if errors.Is(err, syscall.EMFILE) || strings.Contains(err.Error(), "too many open files") {
					emfile.Add(1)
				}
				go c.Close()
				return
			}
			clients[i] = c
			connected.Add(1)
			if id, _ := c.Node.Load().(string); id != "" {
				nodesMu.Lock()
				nodes[id] = true
				nodesMu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	stopProgress()
	res.Connected, res.ConnectErrs = int(connected.Load()), int(connErrs.Load())
	res.PushNodes = len(nodes)
	res.ConnectSecs = time.Since(connStart).Seconds()
	logf("connected %d/%d users in %.1fs (%d errors)", res.Connected, o.users, res.ConnectSecs, res.ConnectErrs)
	if emfile.Load() > 0 {
		res.FDLimitHit = true
		msg := fmt.Sprintf("OPEN-FILES LIMIT HIT: %d connections failed with 'too many open files' (limit %d); the memory figure is for %d connections, not %d",
			emfile.Load(), res.FDLimit, res.Connected, o.users)
		logf("imctl bench: %s", msg)
		res.Notes = append(res.Notes, msg)
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				go c.Close()
			}
		}
	}()

	if o.rate <= 0 {
		logf("holding %d idle connections for %v", res.Connected, o.hold)
		time.Sleep(o.hold)
		measureMemory(&res)
		return report(res, o.jsonOut)
	}
	plan, err := newBenchPlan(ctx, o, users, tokens)
	if err != nil {
		return err
	}
	res.GroupSize, res.Groups = o.groupSize, plan.groups()
	// Give the message tier's presence cache a moment to see every session.
	time.Sleep(time.Second)

	// Send at the rate through the API (over HTTP or the push sockets).
	text := strings.Repeat("x", o.textBytes)
	send, err := benchSender(o.sendVia, g.api, text, users, tokens, clients, o.concurrency)
	if err != nil {
		return err
	}
	var (
		nSent, nAcked, nErr atomic.Int64
		ackLat              []time.Duration
		latMu               sync.Mutex
	)
	ssem := make(chan struct{}, o.concurrency)
	// Client message ids are unique per invocation, so a second bench with
	// the same --run-id (the same users and conversations, e.g. after a
	// warm-up run) sends new messages instead of retries of the first's.
	sendID := strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36*36), 36)
	cpuBefore, err := snapshotServerCPU(o.serverPIDs)
	if err != nil {
		return err
	}
	clientBefore, clientErr := procCPU(os.Getpid())
	start := time.Now()
	end := start.Add(o.duration)
	stopProgress = progress(func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("t=%4.0fs sent=%d acked=%d delivered=%d errors=%d rate=%.0f/s inflight=%d",
			el, nSent.Load(), nAcked.Load(), delivered.Load(), nErr.Load(), float64(nAcked.Load())/max(el, 0.001), len(ssem))
	})
	var swg sync.WaitGroup
	for k := 0; ; k++ {
		next := start.Add(time.Duration(float64(k) / o.rate * float64(time.Second)))
		if next.After(end) {
			break
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		ssem <- struct{}{}
		from, to, group := plan.pick(k)
		if clients[from] == nil || to >= 0 && clients[to] == nil {
			<-ssem
			continue
		}
		cmid := fmt.Sprintf("%s-%s-%d", o.runID, sendID, k)
		m := &sentMsg{start: time.Now(), expect: plan.receivers(from, clients), receivers: map[int]bool{}}
		sentMu.Lock()
		sent[cmid] = m
		sentMu.Unlock()
		nSent.Add(1)
		swg.Add(1)
		go func() {
			defer swg.Done()
			defer func() { <-ssem }()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := send(sctx, from, to, group, cmid)
			cancel()
			now := time.Now()
			if err != nil {
				nErr.Add(1)
				return
			}
			sentMu.Lock()
			m.acked, m.ok = now, true
			sentMu.Unlock()
			nAcked.Add(1)
			latMu.Lock()
			ackLat = append(ackLat, now.Sub(m.start))
			latMu.Unlock()
		}()
	}
	swg.Wait()
	sendSecs := time.Since(start).Seconds()
	settleEnd := time.Now().Add(o.settle)
	for !plan.allDelivered(&sentMu, sent) && time.Now().Before(settleEnd) {
		time.Sleep(50 * time.Millisecond)
	}
	stopProgress()
	window := time.Since(start).Seconds()
	res.ServerCPU, res.CPUWindowSecs = nil, window
	cpuAfter, _ := snapshotServerCPU(o.serverPIDs)
	if c, err := procCPU(os.Getpid()); err == nil && clientErr == nil {
		res.ClientCPUCores = (c - clientBefore) / window
	}
	if procs, total := cpuAfter.since(cpuBefore, window); len(procs) > 0 {
		res.ServerCPU, res.ServerCPUCores = procs, total/window
		if d := delivered.Load(); d > 0 {
			res.CPUPerMsgMs = total * 1000 / float64(d)
		}
	}

	res.DurationSecs = sendSecs
	res.Sent, res.Acked, res.SendErrors = nSent.Load(), nAcked.Load(), nErr.Load()
	res.Delivered, res.Duplicated, res.Reordered = delivered.Load(), dups.Load(), reordered.Load()
	res.AckedPerSec = float64(res.Acked) / sendSecs
	var allLat []time.Duration
	var lastDeliver time.Time
	sentMu.Lock()
	for _, m := range sent {
		if m.ok {
			res.Lost += int64(m.expect - m.deliveries)
		}
		if !m.delivered.IsZero() {
			allLat = append(allLat, m.delivered.Sub(m.start))
			if m.delivered.After(lastDeliver) {
				lastDeliver = m.delivered
			}
		}
	}
	res.SendDeliverMs = percentiles(delivLat)
	sentMu.Unlock()
	if o.groupSize > 0 {
		res.SendDeliverAllMs = percentiles(allLat)
	}
	if !lastDeliver.IsZero() {
		res.DelivPerSec = float64(res.Delivered) / lastDeliver.Sub(start).Seconds()
	}
	if res.AckedPerSec < 0.95*o.rate {
		res.Notes = append(res.Notes, fmt.Sprintf("target rate %.0f/s not sustained: %.0f acked/s (send latency × --concurrency %d bounds the generator)",
			o.rate, res.AckedPerSec, o.concurrency))
	}
	if o.ack {
		res.Notes = append(res.Notes, "clients acknowledged every event (--ack): the figures include the delivered receipts")
	}
	res.SendAckMs = percentiles(ackLat)
	measureMemory(&res)
	return report(res, o.jsonOut)
}

func measureMemory(res *BenchResult) {
	for i := range res.Memory {
		nm := &res.Memory[i]
		m, err := scrape(nm.URL)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("scrape %s: %v", nm.URL, err))
			continue
		}
		nm.RSSAfterBytes, nm.HeapAfterBytes = m["process_resident_memory_bytes"], m["go_memstats_heap_inuse_bytes"]
		nm.Connections, nm.Goroutines = int(m["imcluster_push_connections"]), m["go_goroutines"]
		nm.OpenFDs, nm.MaxFDs, nm.FDExhausted = m["process_open_fds"], m["process_max_fds"], m["imcluster_push_accept_fd_exhausted_total"]
		if nm.FDExhausted > 0 || nm.MaxFDs > 0 && nm.OpenFDs >= nm.MaxFDs-16 {
			res.FDLimitHit = true
			res.Notes = append(res.Notes, fmt.Sprintf("OPEN-FILES LIMIT HIT on push node %s: %d accepts refused with EMFILE (open fds %d, limit %d; 0 = unreadable); "+
				"it holds %d connections, not the %d asked for: one process cannot hold more sockets than its open-files limit. "+
				"Memory figures below are for %d connections at best.",
				nm.URL, nm.FDExhausted, nm.OpenFDs, nm.MaxFDs, nm.Connections, res.Users, nm.Connections))
		}
		if nm.RSSAfterBytes == 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("push node %s reported no RSS (its process collector needs a free file descriptor): no per-connection RSS figure", nm.URL))
		} else if nm.Connections > 0 {
			nm.RSSPerConnKiB = float64(nm.RSSAfterBytes-nm.RSSBeforeBytes) / float64(nm.Connections) / 1024
			nm.HeapPerConnKiB = float64(nm.HeapAfterBytes-nm.HeapBeforeBytes) / float64(nm.Connections) / 1024
		}
	}
}

// scrape reads the untyped value of a few metrics from a Prometheus text page.
func scrape(base string) (map[string]int64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err == nil {
			out[name] = int64(f)
		}
	}
	return out, sc.Err()
}

func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(ds)-1))
		return float64(ds[i].Microseconds()) / 1000
	}
	return Percentiles{N: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: at(1)}
}

// progress prints line() on stderr every second, in place on a terminal,
// else one line every 5 s.
func progress(line func() string) (stop func()) {
	tty := false
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-done:
				fmt.Fprintf(os.Stderr, "\r%s\n", line())
				return
			case <-t.C:
				if tty {
					fmt.Fprintf(os.Stderr, "\r%s   ", line())
				} else if n%5 == 0 {
					fmt.Fprintln(os.Stderr, line())
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func report(r BenchResult, asJSON bool) error {
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("run %s: %d users over %d push URL(s) reached %d push node(s), %d connected (%d errors) in %.1fs, open-files limit %d\n",
		r.RunID, r.Users, r.PushURLs, r.PushNodes, r.Connected, r.ConnectErrs, r.ConnectSecs, r.FDLimit)
	if r.RateTarget > 0 {
		via := ""
		if r.SendVia == viaWS {
			via = " (sent over the push sockets)"
		}
		fmt.Printf("rate %.0f/s for %.1fs: sent %d, acked %d (%.0f/s), send errors %d%s\n",
			r.RateTarget, r.DurationSecs, r.Sent, r.Acked, r.AckedPerSec, r.SendErrors, via)
		fmt.Printf("delivered %d (%.0f/s), lost %d, duplicated %d, reordered %d\n", r.Delivered, r.DelivPerSec, r.Lost, r.Duplicated, r.Reordered)
		fmt.Printf("send→ack     ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", r.SendAckMs.P50, r.SendAckMs.P90, r.SendAckMs.P99, r.SendAckMs.Max)
		fmt.Printf("send→deliver ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", r.SendDeliverMs.P50, r.SendDeliverMs.P90, r.SendDeliverMs.P99, r.SendDeliverMs.Max)
		if r.GroupSize > 0 {
			a := r.SendDeliverAllMs
			fmt.Printf("groups: %d of %d members (delivered, lost and duplicated count deliveries to members)\n", r.Groups, r.GroupSize)
			fmt.Printf("send→all members ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", a.P50, a.P90, a.P99, a.Max)
		}
		if len(r.ServerCPU) > 0 {
			var parts []string
			for _, p := range r.ServerCPU {
				parts = append(parts, fmt.Sprintf("%s %.2f", p.Name, p.Cores))
			}
			fmt.Printf("server CPU over %.1fs: %.2f cores (%s); %.2f ms per delivered message\n",
				r.CPUWindowSecs, r.ServerCPUCores, strings.Join(parts, ", "), r.CPUPerMsgMs)
			if r.ClientCPUCores > 0 {
				fmt.Printf("load generator (this imctl) CPU over the same window: %.2f cores\n", r.ClientCPUCores)
			}
		}
	}
	for _, m := range r.Memory {
		fmt.Printf("push %s: %d connections, RSS %.1f→%.1f MiB (%.2f KiB/conn), heap in use %.1f→%.1f MiB (%.2f KiB/conn), %d goroutines\n",
			m.URL, m.Connections, mib(m.RSSBeforeBytes), mib(m.RSSAfterBytes), m.RSSPerConnKiB,
			mib(m.HeapBeforeBytes), mib(m.HeapAfterBytes), m.HeapPerConnKiB, m.Goroutines)
	}
	for _, n := range r.Notes {
		fmt.Println("NOTE:", n)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
