package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/protocol"
)

// Send paths of imctl bench (--send-via).
const (
	viaHTTP = "http" // POST /v1/messages on the message API
	viaWS   = "ws"   // a send frame on the sender's own push socket, forwarded by the push tier
)

// sendFunc sends one bench message from user index from to user index to,
// or, with group set, to that group; nil means the message tier acked it
// (in the durable log).
type sendFunc func(ctx context.Context, from, to int, group, cmid string) error

// benchSender returns how bench sends: over HTTP with each user's token
// (the default), or over each sender's WebSocket.
func benchSender(via, apiURL, text string, users, tokens []string, clients []*client.Client, concurrency int) (sendFunc, error) {
	req := func(to int, group, cmid string) client.SendRequest {
		r := client.SendRequest{GroupID: group, ClientMsgID: cmid, Type: protocol.TypeText, Body: &protocol.Body{Text: text}}
		if group == "" {
			r.To = users[to]
		}
		return r
	}
	switch via {
	case viaHTTP, "":
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency,
			TLSClientConfig: g.tls}}
		return func(ctx context.Context, from, to int, group, cmid string) error {
			api := client.API{BaseURL: apiURL, Token: tokens[from], Device: "d0", HTTP: hc}
			_, err := api.Send(ctx, req(to, group, cmid))
			return err
		}, nil
	case viaWS:
		return func(ctx context.Context, from, to int, group, cmid string) error {
			res, err := clients[from].Send(ctx, req(to, group, cmid))
			if err == nil && res.Status/100 != 2 {
				err = fmt.Errorf("send over the socket answered %d", res.Status)
			}
			return err
		}, nil
	}
	return nil, fmt.Errorf("--send-via must be %s or %s, not %q", viaHTTP, viaWS, via)
}
