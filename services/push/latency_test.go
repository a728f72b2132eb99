package push_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
	"github.com/imcluster/imcluster/services/route"
)

// TestPushDeliveryLatency measures the push tier alone: a delivery call on
// the internal endpoint → the frame read by the device, at a fixed rate,
// over 1,000 connected devices. It is a measurement, not a check: it runs
// only with IM_PUSH_BENCH=1 (see docs/benchmarks.md).
//
//	IM_PUSH_BENCH=1 go test -run PushDeliveryLatency -v ./services/push
func TestPushDeliveryLatency(t *testing.T) {
	if os.Getenv("IM_PUSH_BENCH") != "1" {
		t.Skip("measurement; set IM_PUSH_BENCH=1")
	}
	const (
		devices  = 1000
		rate     = 1000 // deliveries per second
		duration = 10 * time.Second
	)
	uv, _ := auth.NewVerifier(auth.KindUser, userKey)
	iv, _ := auth.NewVerifier(auth.KindInternal, internalKey)
	ts, _ := route.NewTokenSource(internalKey, "bench")
	srv, err := push.New(push.Options{NodeID: "bench", Users: uv, Internal: iv, InternalTokens: ts, MessageURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	in := httptest.NewServer(srv.InternalHandler())
	defer in.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	signer, _ := auth.NewSigner(auth.KindUser, userKey)

	var starts sync.Map // seq → time.Time
	var lat []time.Duration
	var latMu sync.Mutex
	var got atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < devices; i++ {
		nc, _, _, err := ws.Dial(context.Background(), "ws://"+ln.Addr().String()+"/")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		tok, _ := signer.Sign(fmt.Sprint("u", i), time.Hour)
		login, _ := json.Marshal(protocol.ClientFrame{Type: protocol.FrameLogin, Token: tok, DeviceID: "d", Terminal: "ios"})
		if err := wsutil.WriteClientText(nc, login); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := wsutil.ReadServerText(nc)
				if err != nil {
					return
				}
				now := time.Now()
				var f protocol.ServerFrame
				if json.Unmarshal(p, &f) != nil || f.Type != protocol.FrameEvent {
					continue
				}
				if st, ok := starts.Load(f.Event.Seq); ok {
					latMu.Lock()
					lat = append(lat, now.Sub(st.(time.Time)))
					latMu.Unlock()
					got.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Connections() < devices || time.Now().Before(deadline.Add(-9500*time.Millisecond)) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connected", srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // welcome frames out of the way
	tok, _ := ts.Token()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var sent int64
	start := time.Now()
	sem := make(chan struct{}, 64)
	for k := 0; ; k++ {
		next := start.Add(time.Duration(k) * time.Second / rate)
		if next.After(start.Add(duration)) {
			break
		}
		time.Sleep(time.Until(next))
		seq := int64(k)
		user := fmt.Sprint("u", rand.IntN(devices))
		body, _ := json.Marshal(protocol.DeliveryBatch{Deliveries: []protocol.Delivery{{
			Event: protocol.Event{Kind: protocol.KindMessage, ConvID: "p:a:" + user, Seq: seq, From: "a",
				Message: &protocol.Message{MsgID: fmt.Sprint(seq), From: "a", To: user, Type: protocol.TypeText, Body: &protocol.Body{Text: "0123456789012345678901234567890123456789012345678901234567890123"}}},
			Targets: []protocol.Target{{UserID: user, DeviceID: "d", Epoch: epochOf(srv, user)}},
		}}})
		sem <- struct{}{}
		starts.Store(seq, time.Now())
		sent++
		go func() {
			defer func() { <-sem }()
			req, _ := http.NewRequest(http.MethodPost, in.URL+protocol.DeliveryPath, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wait := time.Now().Add(5 * time.Second)
	for got.Load() < sent && time.Now().Before(wait) {
		time.Sleep(10 * time.Millisecond)
	}
	latMu.Lock()
	defer latMu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))] }
	t.Logf("push tier alone: %d deliveries at %d/s to %d devices: received %d; delivery call → device p50 %v, p90 %v, p99 %v, max %v",
		sent, rate, devices, len(lat), q(0.5), q(0.9), q(0.99), q(1))
	if int64(len(lat)) != sent {
		t.Errorf("lost %d deliveries", sent-int64(len(lat)))
	}
}

// epochOf returns the epoch the node gave user's device: the bench logs in
// without presence, so it reads it back through a delivery-free path.
func epochOf(srv *push.Server, user string) int64 { return srv.EpochOf(user, "d") }
