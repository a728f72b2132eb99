package message_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/imcluster/imcluster/services/message/internal/msgtest"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/tlsconf/tlstest"
)

// The API listener with IM_TLS_CERT_FILE/IM_TLS_KEY_FILE serves https: a
// client trusting the CA gets answers (authenticated API calls too), one
// without it is refused by its own TLS check; a new pair written the way
// the kubelet updates a Secret is served without restart, and a bad
// rewrite keeps the last good pair.
func TestAPIOverTLSFollowsCertificate(t *testing.T) {
	e := newEnv(t, 1)
	ca := tlstest.NewCA(t, "message-ca")
	sec := tlstest.NewSecretDir(t)
	c1, k1, s1 := ca.Issue(t)
	sec.Pair(t, ca, c1, k1)
	cfg := e.cfg
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = sec.Cert(), sec.Key()

	addrc := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{Role: server.RoleAPI, Router: e.router,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), KeyReloadInterval: 20 * time.Millisecond,
			Listening: func(a string) { addrc <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("message tier: %v", err)
		}
	})
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("message tier did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("message tier did not start within 60s")
	}

	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}
	c := msgtest.Client{URL: "https://" + addr, HC: trusting}
	msgtest.Eventually(t, 60*time.Second, "API ready over https", func() bool {
		resp, err := trusting.Get(c.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	path := "/v1/conversations/" + model.ConvID("alice", "bob") + "/messages?limit=1"
	if r := c.Do(t, "GET", path, e.user(t, "alice"), nil); r.Status != 200 {
		t.Fatalf("history over https: %d %s", r.Status, r.Body)
	}
	_, err := (&http.Client{Timeout: 10 * time.Second}).Get(c.URL + "/healthz") // system roots only
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("client without the CA: err=%v, want unknown authority", err)
	}
	// Plain http on the TLS listener gets Go's 400, never the API.
	if resp, err := http.Get("http://" + addr + path); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain http on the TLS listener answered %d, want 400", resp.StatusCode)
		}
	}

	trust := ca.ClientConfig()
	tlstest.AwaitSerial(t, addr, trust, s1, 5*time.Second)
	c2, k2, s2 := ca.Issue(t)
	sec.Pair(t, ca, c2, k2)
	tlstest.AwaitSerial(t, addr, trust, s2, 10*time.Second)

	_, k3, _ := ca.Issue(t)
	sec.Pair(t, ca, c2, k3) // key of another certificate: refused
	// Await the failed reload: the Watch loop reloads every 20 ms; give it
	// many periods, then the pair served must still be the last good one.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got, err := tlstest.PeerSerial(addr, trust); err != nil || got.Cmp(s2) != 0 {
			t.Fatalf("after a bad rewrite: serial %v, err %v; want %v still", got, err, s2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := c.Do(t, "GET", path, e.user(t, "alice"), nil); r.Status != 200 {
		t.Fatalf("history after a bad rewrite: %d %s", r.Status, r.Body)
	}
}
