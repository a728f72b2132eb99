package client

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/imcluster/imcluster/services/protocol"
)

// TestAcksSurviveAFailedWrite: acks whose write fails (the socket broke)
// are kept and sent on the next connection, all of them, in frames of at
// most MaxAcksPerFrame.
func TestAcksSurviveAFailedWrite(t *testing.T) {
	const convs = 300 // more than one frame's worth
	c := New(Config{URLs: []string{"ws://127.0.0.1:1/"}, DeviceID: "d", Terminal: "web"})
	c.user.Store("me")
	for i := 0; i < convs; i++ {
		c.deliver(protocol.Event{Kind: protocol.KindMessage, ConvID: fmt.Sprintf("p:me:u%03d", i), Seq: int64(10 + i), From: fmt.Sprintf("u%03d", i)}, true)
	}

	broken, peer := net.Pipe()
	_ = peer.Close() // every write on broken fails
	c.mu.Lock()
	c.live = broken
	c.mu.Unlock()
	c.flushAcks()

	// The next connection gets every ack.
	conn, node := net.Pipe()
	t.Cleanup(func() { _ = conn.Close(); _ = node.Close() })
	c.mu.Lock()
	c.live = conn
	c.mu.Unlock()
	got := map[string]int64{}
	read := make(chan error, 1)
	go func() {
		_ = node.SetReadDeadline(time.Now().Add(3 * time.Second))
		for len(got) < convs {
			p, err := wsutil.ReadClientText(node)
			if err != nil {
				read <- err
				return
			}
			var f protocol.ClientFrame
			if err := json.Unmarshal(p, &f); err != nil {
				read <- err
				return
			}
			if f.Type != protocol.FrameAck || len(f.Acks) > protocol.MaxAcksPerFrame {
				read <- fmt.Errorf("unexpected frame %s", p)
				return
			}
			for _, a := range f.Acks {
				got[a.ConvID] = a.Seq
			}
		}
		read <- nil
	}()
	c.flushAcks()
	if err := <-read; err != nil {
		t.Fatalf("after %d of %d acks: %v", len(got), convs, err)
	}
	for i := 0; i < convs; i++ {
		if conv := fmt.Sprintf("p:me:u%03d", i); got[conv] != int64(10+i) {
			t.Fatalf("%s acked %d, want %d", conv, got[conv], 10+i)
		}
	}
}
