package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/server"
	"github.com/imcluster/imcluster/services/message/store"
	"github.com/imcluster/imcluster/services/presence"
	"github.com/imcluster/imcluster/services/webhook"
)

// addWebhooks wires the webhooks of the environment (IM_WEBHOOK_*) into a
// message process: the before_send gate into the API (roles all and api),
// the dispatcher of the asynchronous events as a component (roles all and
// pipeline). Nothing is added when no webhook URL is set.
func addWebhooks(cfg config.Message, role string, cli *clientv3.Client, cache *presence.Cache, log *slog.Logger, opt *server.Options) error {
	wh, err := config.LoadWebhook(os.Getenv, cfg.Group)
	if err != nil {
		return err
	}
	if wh.BeforeSendURL == "" && wh.URL == "" {
		return nil
	}
	secret, err := config.ReadSecretFile(wh.SecretFile)
	if err != nil {
		return fmt.Errorf("webhook secret (%s): %w", config.EnvWebhookSecretFile, err)
	}
	if wh.BeforeSendURL != "" && role != server.RolePipeline {
		opt.Gate = webhook.NewGate(wh, secret)
		log.Info("before_send webhook on", "url", wh.BeforeSendURL, "timeout", wh.BeforeSendTimeout, "fail_open", wh.BeforeSendFailOpen)
	}
	if wh.URL != "" && role != server.RoleAPI {
		d := &webhook.Dispatcher{Kafka: cfg.Kafka, Hook: wh, Secret: secret, ClientID: cfg.NodeID, Log: log,
			Etcd: cli, EtcdPrefix: cfg.EtcdPrefix, Groups: &storeGroups{cfg: cfg}}
		if cache != nil {
			d.Directory, d.DirectoryReady = cache, cache.WaitReady
		}
		opt.Components = append(opt.Components, server.Component{Name: "webhook",
			WhileDown: "messages flow; webhook events wait in the log", Run: d.Run, Health: d.Health})
		log.Info("webhook dispatcher on", "url", wh.URL, "events", wh.Events, "group", wh.Group)
	}
	return nil
}

// storeGroups gives the dispatcher group members from Cassandra. Its
// session opens on first use (a message process starts without
// Cassandra: sends are log-first) and lives as long as the process.
type storeGroups struct {
	cfg config.Message
	mu  sync.Mutex
	st  *store.Store
}

// MembersAt implements webhook.GroupMembers.
func (g *storeGroups) MembersAt(ctx context.Context, group string, seq int64) ([]string, error) {
	g.mu.Lock()
	if g.st == nil {
		st, err := store.Open(g.cfg.Cassandra, g.cfg.Topic, int(g.cfg.Partitions))
		if err != nil {
			g.mu.Unlock()
			return nil, err
		}
		g.st = st
	}
	st := g.st
	g.mu.Unlock()
	gs, err := st.LoadGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	return gs.MembersAt(seq), nil
}
