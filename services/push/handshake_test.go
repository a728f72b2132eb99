package push_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/push"
)

// TestOversizeHandshakeIsCut: an upgrade request with an endless header
// line is cut off once it passes the handshake bound, long before the
// login timeout, instead of being buffered for as long as it lasts.
func TestOversizeHandshakeIsCut(t *testing.T) {
	_, url := bareNode(t, "http://127.0.0.1:1", nil, func(o *push.Options) { o.LoginTimeout = 20 * time.Second })
	nc, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	start := time.Now()
	go func() {
		_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Big: ")
		chunk := bytes.Repeat([]byte("a"), 4096)
		for i := 0; i < 256; i++ { // 1 MiB, no end of line
			if _, err := nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, nc) // returns when the node closes
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the node still reads the handshake after %v", time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cut after %v, want well before the login timeout", d)
	}
}
