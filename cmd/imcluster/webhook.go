package main

import (
	"fmt"
	"log/slog"
	"os"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/imcluster/imcluster/services/config"
	"github.com/imcluster/imcluster/services/message/server"
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
			Etcd: cli, EtcdPrefix: cfg.EtcdPrefix}
		if cache != nil {
			d.Directory, d.DirectoryReady = cache, cache.WaitReady
		}
		opt.Components = append(opt.Components, server.Component{Name: "webhook",
			WhileDown: "messages flow; webhook events wait in the log", Run: d.Run, Health: d.Health})
		log.Info("webhook dispatcher on", "url", wh.URL, "events", wh.Events, "group", wh.Group)
	}
	return nil
}
