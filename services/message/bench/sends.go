package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcluster/imcluster/services/message/server"
)

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
