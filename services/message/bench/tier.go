package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/imcluster/imcluster/services/auth"
	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/pipeline"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/protocol"
)

type env struct {
	cfg   config.Message
	user  *auth.Signer
	url   string
	stop  func()
	hc    *http.Client
	route *countRouter
}

type countRouter struct {
	n     atomic.Int64
	first atomic.Int64 // unix ns of the first routed batch
}

func (r *countRouter) Route(_ context.Context, b []pipeline.Routed) error {
	r.first.CompareAndSwap(0, time.Now().UnixNano())
	r.n.Add(int64(len(b)))
	return nil
}

func startTier(cfg config.Message, role string) *env {
	dir, _ := os.MkdirTemp("", "msgbench")
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := []byte(hex.EncodeToString(raw)) // text: key files are newline-trimmed
	cfg.UserKeyFile = filepath.Join(dir, "user.key")
	_ = os.WriteFile(cfg.UserKeyFile, key, 0o600)
	signer, _ := auth.NewSigner(auth.KindUser, key)
	e := &env{cfg: cfg, user: signer, route: &countRouter{},
		hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 512}}}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, server.Options{Role: role, Router: e.route, Listening: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		e.url = "http://" + a
	case err := <-done:
		fail(err)
	}
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bench: tier stopped with", err)
		}
		_ = os.RemoveAll(dir)
	}
	for range 600 {
		if r, err := http.Get(e.url + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return e
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fail(fmt.Errorf("tier not ready"))
	return nil
}

func (e *env) token(u string) string {
	t, err := e.user.Sign(u, time.Hour)
	if err != nil {
		fail(err)
	}
	return t
}

func (e *env) send(tok, to, cmid string) (time.Duration, error) {
	b, _ := json.Marshal(api.SendRequest{To: to, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: "the quick brown fox jumps over the lazy dog"}})
	req, _ := http.NewRequest("POST", e.url+"/v1/messages", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("send: %d %s", resp.StatusCode, rb)
	}
	return time.Since(start), nil
}
