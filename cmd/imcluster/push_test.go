package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPushHTTPServerIsBounded: the push node's HTTP listeners (delivery
// endpoint, metrics) bound every read, write and idle wait and the header
// size, and refuse oversize headers.
func TestPushHTTPServerIsBounded(t *testing.T) {
	hs := pushHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": hs.ReadHeaderTimeout, "ReadTimeout": hs.ReadTimeout,
		"WriteTimeout": hs.WriteTimeout, "IdleTimeout": hs.IdleTimeout,
	} {
		if d <= 0 || d > 5*time.Minute {
			t.Errorf("%s = %v, want a bound in (0, 5m]", name, d)
		}
	}
	if hs.MaxHeaderBytes <= 0 || hs.MaxHeaderBytes > 64<<10 {
		t.Fatalf("MaxHeaderBytes = %d, want (0, 64 KiB]", hs.MaxHeaderBytes)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 256<<10))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("256 KiB of headers answered %d, want 431", resp.StatusCode)
	}
}
