package msgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/server"
)

// Keys signs test tokens of every kind.
type Keys struct {
	User, Service, Internal *auth.Signer
}

// WriteKeys writes fresh random keys to files under t.TempDir and points
// cfg at them.
func WriteKeys(t testing.TB, cfg *config.Message) Keys {
	t.Helper()
	dir := t.TempDir()
	var k Keys
	for _, kind := range []auth.Kind{auth.KindUser, auth.KindService, auth.KindInternal} {
		// Hex, not raw bytes: key files are read with trailing newlines
		// trimmed, which would shorten a raw key ending in '\n'.
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		key := []byte(hex.EncodeToString(raw))
		path := filepath.Join(dir, string(kind)+".key")
		if err := os.WriteFile(path, key, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := auth.NewSigner(kind, key)
		if err != nil {
			t.Fatal(err)
		}
		switch kind {
		case auth.KindUser:
			cfg.UserKeyFile, k.User = path, s
		case auth.KindService:
			cfg.ServiceKeyFile, k.Service = path, s
		case auth.KindInternal:
			cfg.InternalKeyFile, k.Internal = path, s
		}
	}
	return k
}

// Token signs a token or fails t.
func Token(t testing.TB, s *auth.Signer, subject string) string {
	t.Helper()
	tok, err := s.Sign(subject, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// RecRouter records what the pipeline routes.
type RecRouter struct {
	mu      sync.Mutex
	batches [][]pipeline.Routed
}

// Route implements pipeline.Router.
func (r *RecRouter) Route(_ context.Context, b []pipeline.Routed) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, append([]pipeline.Routed(nil), b...))
	return nil
}

// All returns every routed item in routing order.
func (r *RecRouter) All() []pipeline.Routed {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pipeline.Routed
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// Proc is an in-process message tier.
type Proc struct {
	URL    string
	cancel context.CancelFunc
	done   chan error
}

// Start runs the message tier with role in-process until t ends (or Stop).
// It returns once the API answers and, for roles with a pipeline, once the
// consumer group session is up.
func Start(t testing.TB, cfg config.Message, role string, router pipeline.Router, opts ...func(*server.Options)) *Proc {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	addr := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{cancel: cancel, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("IM_TEST_VERBOSE") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	opt := server.Options{Role: role, Router: router, Log: log, Listening: func(a string) { addr <- a }}
	for _, o := range opts {
		o(&opt)
	}
	go func() { p.done <- server.Run(ctx, cfg, opt) }()
	select {
	case a := <-addr:
		p.URL = "http://" + a
	case err := <-p.done:
		t.Fatalf("message tier did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("message tier did not start within 30s")
	}
	t.Cleanup(func() { _ = p.Stop() })
	Eventually(t, 60*time.Second, "message tier ready", func() bool {
		resp, err := http.Get(p.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// Stop stops the tier and waits for it.
func (p *Proc) Stop() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.cancel = nil
	return <-p.done
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}

// Client calls the API.
type Client struct {
	URL string
	HC  *http.Client
}

// Resp is an API answer.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v or fails t.
func (r Resp) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// Code returns the error code of a non-2xx answer.
func (r Resp) Code() string {
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// Do sends a request. body may be nil, []byte/string (sent raw) or a value
// (sent as JSON). hdr are extra headers.
func (c Client) Do(t testing.TB, method, path, token string, body any, hdr ...string) Resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := c.HC
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
