//go:build linux

package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/test/testdeps"
)

// TestBeforeSendLatency measures what before_send adds to a send: sends
// at IM_WEBHOOK_BENCH_RATE (default 300/s) for IM_WEBHOOK_BENCH_SECONDS
// (default 15) per round against two message processes of one cluster,
// one without a webhook and one with before_send to a local receiver
// (pkg/sdk's handler, allowing), alternating rounds. It reports send
// latency percentiles of each and the before_send stage's own histogram
// (imcluster_message_before_send_seconds). A measurement, not a check:
// it runs only with IM_WEBHOOK_BENCH=1 (docs/benchmarks.md).
func TestBeforeSendLatency(t *testing.T) {
	if os.Getenv("IM_WEBHOOK_BENCH") == "" {
		t.Skip("a measurement: set IM_WEBHOOK_BENCH=1")
	}
	rate, secs := 300.0, 15
	if v, err := strconv.ParseFloat(os.Getenv("IM_WEBHOOK_BENCH_RATE"), 64); err == nil {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("IM_WEBHOOK_BENCH_SECONDS")); err == nil {
		secs = v
	}
	c := newCluster(t)
	r := newReceiver(t, c.secret)
	r.mu.Lock()
	r.captured = make([]capture, 200) // full: capture nothing
	r.mu.Unlock()
	plain := c.startMessage("message-plain", false)
	gated := c.startMessage("message-gated", false, config.EnvWebhookBeforeSendURL+"="+r.srv.URL+"/before")
	tokens := map[string]string{}
	for i := range 50 {
		u := fmt.Sprintf("u%d", i)
		tokens[u] = c.token(u)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}, Timeout: 20 * time.Second}
	for round := range 4 {
		p := []*proc{plain, gated}[round%2]
		lat, errs := paced(t, hc, p, tokens, rate, time.Duration(secs)*time.Second)
		t.Logf("round %d %-14s rate %.0f/s n=%d errors=%d  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms",
			round, p.name, rate, len(lat), errs, pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100))
	}
	t.Logf("before_send stage on %s: %s", gated.name, stageSummary(t, gated))
	_ = sdk.ActionAllow
}

// paced sends at rate for d and returns the send latencies (ms).
func paced(t *testing.T, hc *http.Client, p *proc, tokens map[string]string, rate float64, d time.Duration) ([]float64, int) {
	users := make([]string, 0, len(tokens))
	for u := range tokens {
		users = append(users, u)
	}
	sort.Strings(users)
	var mu sync.Mutex
	var lat []float64
	errs := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		from, to := users[i%len(users)], users[(i+1+i/len(users))%len(users)]
		if from == to {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			b, _ := json.Marshal(protocol.SendRequest{To: to, ClientMsgID: testdeps.Unique("b"), Type: protocol.TypeText,
				Body: &protocol.Body{Text: "latency probe, sixty-four bytes of text or so to look like chat"}, Attempt: 1})
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, p.api+"/v1/messages", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+tokens[from])
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := hc.Do(req)
			ms := float64(time.Since(t0).Microseconds()) / 1000
			ok := err == nil && resp.StatusCode == 200
			if resp != nil {
				resp.Body.Close()
			}
			mu.Lock()
			if ok {
				lat = append(lat, ms)
			} else {
				errs++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, errs
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// stageSummary reads the before_send histogram of p's /metrics: count and
// the bucket bounds below which 50%, 99% of the checks finished.
func stageSummary(t *testing.T, p *proc) string {
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type bucket struct {
		le  float64
		cum float64
	}
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, `imcluster_message_before_send_seconds_bucket{`) || !strings.Contains(l, `outcome="allow"`) {
			continue
		}
		i := strings.Index(l, `le="`)
		j := strings.Index(l[i+4:], `"`)
		le, _ := strconv.ParseFloat(l[i+4:i+4+j], 64)
		f := strings.Fields(l)
		n, _ := strconv.ParseFloat(f[len(f)-1], 64)
		bs = append(bs, bucket{le, n})
	}
	if len(bs) == 0 {
		return "no histogram"
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	total := bs[len(bs)-1].cum
	at := func(q float64) string {
		for _, b := range bs {
			if b.cum >= q*total {
				return fmt.Sprintf("≤ %.2f ms", b.le*1000)
			}
		}
		return "?"
	}
	return fmt.Sprintf("n=%.0f p50 %s p99 %s", total, at(0.5), at(0.99))
}
