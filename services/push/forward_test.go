package push_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/protocol"
	"github.com/imcluster/imcluster/services/push"
)

// TestForwardingIsBoundedPerNode: while the message tier stalls, sends
// beyond MaxForwarding on the node are answered unavailable at once
// instead of piling up.
func TestForwardingIsBoundedPerNode(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	tier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"msg_id":"m"}`))
	}))
	t.Cleanup(tier.Close)
	t.Cleanup(func() { close(release) })
	_, url := bareNode(t, tier.URL, nil, func(o *push.Options) { o.MaxForwarding = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cls []*client.Client
	for i := 0; i < 3; i++ {
		u := fmt.Sprint("wes", i)
		c := client.New(client.Config{URLs: []string{url}, Token: userToken(t, u), DeviceID: "d", Terminal: "web", NoSync: true})
		c.Start()
		t.Cleanup(c.Close)
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		cls = append(cls, c)
	}
	send := func(c *client.Client, ctx context.Context) error {
		_, err := c.Send(ctx, map[string]any{"to": "x", "client_msg_id": "c", "type": "text", "body": map[string]string{"text": "hi"}})
		return err
	}
	for _, c := range cls[:2] { // these two stall in the message tier
		go func() { _ = send(c, ctx) }()
		<-entered
	}
	qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
	defer qcancel()
	err := send(cls[2], qctx)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != protocol.ErrUnavailable {
		t.Fatalf("third send answered %v, want unavailable at once", err)
	}
}
