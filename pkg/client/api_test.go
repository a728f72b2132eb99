package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestAPIWithoutHTTPClientHasATimeout: an API built without an HTTP client
// must not wait forever for a message tier that never answers.
func TestAPIWithoutHTTPClientHasATimeout(t *testing.T) {
	a := &API{BaseURL: "http://127.0.0.1:1"}
	if got := a.httpClient().Timeout; got <= 0 || got > time.Minute {
		t.Fatalf("default HTTP client timeout %v, want (0, 1m]", got)
	}
	// And the timeout is really applied: a server that hangs is given up
	// on (with the default lowered so the test is quick).
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	saved := defaultHTTP.Timeout
	defaultHTTP.Timeout = 200 * time.Millisecond
	t.Cleanup(func() { defaultHTTP.Timeout = saved })
	a.BaseURL = srv.URL
	done := make(chan error, 1)
	go func() { done <- a.Get(context.Background(), "/v1/sync", nil) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a hanging call succeeded")
		}
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call hangs: no timeout")
	}
}
